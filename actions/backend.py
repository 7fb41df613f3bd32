"""A tiny core-banking stand-in for the VoiceCalm Bank example assistant.

Data comes from ``bank_data.json`` next to this file. By default the file is read once and
every write (transfers, card blocks, address changes, ...) goes to an in-memory copy only, so
the shipped file never changes and each process starts from the same state.

Set ``VOICECALM_BANK_DATA`` to the path of a writable JSON file to keep changes across
restarts: the file is created from the shipped data when it does not exist, and rewritten
atomically after each change.

Other environment variables:

- ``VOICECALM_BANK_AGENTS_AVAILABLE``: ``true``/``false`` forces whether human agents are
  available (otherwise the contact-centre hours below decide, in US Eastern time).

Demo logins (customer number → telephone banking passcode):
``12345678`` → ``2468`` (Maria), ``87654321`` → ``1357`` (James, overdrawn checking),
``11223344`` → ``8080`` (Priya, checking only, debit card already blocked).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import tempfile
import threading
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

SHIPPED_DATA = Path(__file__).with_name("bank_data.json")
DATA_ENV = "VOICECALM_BANK_DATA"
AGENTS_ENV = "VOICECALM_BANK_AGENTS_AVAILABLE"

DAILY_TRANSFER_LIMIT = 5000.0
REPLACEMENT_DELIVERY_DAYS = {"standard": 7, "express": 2}
REPLACEMENT_FEES = {"standard": 0.0, "express": 15.0}

# Contact-centre hours, US Eastern time: weekday index → (open, close). Sunday closed.
AGENT_HOURS = {
    0: (time(8), time(20)),
    1: (time(8), time(20)),
    2: (time(8), time(20)),
    3: (time(8), time(20)),
    4: (time(8), time(20)),
    5: (time(9), time(17)),
}


class BankError(Exception):
    """A request the bank refuses; ``code`` is stable, the message is for logs."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code


@dataclass(frozen=True)
class TransferResult:
    reference: str
    new_balance: float


def normalise_digits(value: Any) -> str:
    """Keep only the digits of a spoken or typed number ("1234-5678" → "12345678")."""
    if value is None:
        return ""
    return "".join(ch for ch in str(value) if ch.isdigit())


def format_money(amount: float) -> str:
    """``1234.5`` → ``$1,234.50`` (always positive; callers say "minus" themselves)."""
    return f"${abs(amount):,.2f}"


def _eastern_now() -> datetime:
    try:
        from zoneinfo import ZoneInfo

        return datetime.now(ZoneInfo("America/New_York"))
    except Exception:  # no tz database: fall back to a fixed UTC-5 offset
        return datetime.now(timezone(timedelta(hours=-5)))


class BankBackend:
    """In-memory bank; thread-safe because in-process actions may run in worker threads."""

    def __init__(self, data: dict[str, Any], persist_path: Optional[Path] = None) -> None:
        self._data = data
        self._persist_path = persist_path
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls) -> "BankBackend":
        path = os.environ.get(DATA_ENV)
        if not path:
            with SHIPPED_DATA.open(encoding="utf-8") as f:
                return cls(json.load(f))
        persist = Path(path)
        if not persist.exists():
            persist.parent.mkdir(parents=True, exist_ok=True)
            persist.write_text(SHIPPED_DATA.read_text(encoding="utf-8"), encoding="utf-8")
        with persist.open(encoding="utf-8") as f:
            return cls(json.load(f), persist_path=persist)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._data)

    def _save(self) -> None:
        if self._persist_path is None:
            return
        directory = self._persist_path.parent
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bank_data.", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(self._data, f, indent=2)
                f.write("\n")
            os.replace(tmp, self._persist_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def _next_reference(self, prefix: str) -> str:
        number = int(self._data.get("next_reference", 100000))
        self._data["next_reference"] = number + 1
        return f"{prefix}{number}"

    # ------------------------------------------------------------------ customers

    def _customer(self, customer_id: Optional[str]) -> dict[str, Any]:
        for customer in self._data["customers"]:
            if customer["id"] == customer_id:
                return customer
        raise BankError("unknown_customer", f"no customer {customer_id!r}")

    def customer(self, customer_id: Optional[str]) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._customer(customer_id))

    def authenticate(self, customer_number: Any, passcode: Any) -> Optional[dict[str, Any]]:
        """The customer when number and passcode match, else None."""
        number = normalise_digits(customer_number)
        code = normalise_digits(passcode)
        if not number or not code:
            return None
        digest = hashlib.sha256(f"{number}:{code}".encode()).hexdigest()
        with self._lock:
            for customer in self._data["customers"]:
                if customer["customer_number"] == number:
                    if hmac.compare_digest(customer["passcode_sha256"], digest):
                        return copy.deepcopy(customer)
                    return None
        return None

    # ------------------------------------------------------------------ accounts

    def _account(self, customer_id: Optional[str], account_type: Optional[str]) -> dict[str, Any]:
        for account in self._customer(customer_id)["accounts"]:
            if account["type"] == account_type:
                return account
        raise BankError("unknown_account", f"{customer_id} has no {account_type} account")

    def account(self, customer_id: Optional[str], account_type: Optional[str]) -> Optional[dict[str, Any]]:
        with self._lock:
            try:
                return copy.deepcopy(self._account(customer_id, account_type))
            except BankError:
                return None

    def recent_transactions(
        self, customer_id: Optional[str], account_type: Optional[str], limit: int = 3
    ) -> list[dict[str, Any]]:
        with self._lock:
            account = self._account(customer_id, account_type)
            return copy.deepcopy(account["transactions"][:limit])

    def payees(self, customer_id: Optional[str]) -> list[str]:
        with self._lock:
            return list(self._customer(customer_id)["payees"])

    def find_payee(self, customer_id: Optional[str], name: Any) -> Optional[str]:
        """The saved payee matching ``name`` (case/space-insensitive, first name allowed)."""
        wanted = " ".join(str(name or "").lower().split())
        if not wanted:
            return None
        payees = self.payees(customer_id)
        for payee in payees:
            if payee.lower() == wanted:
                return payee
        partial = [p for p in payees if p.lower().split()[0] == wanted]
        return partial[0] if len(partial) == 1 else None

    def transfer(
        self, customer_id: Optional[str], from_account: Optional[str], payee: Any, amount: Any
    ) -> TransferResult:
        try:
            value = round(float(amount), 2)
        except (TypeError, ValueError):
            raise BankError("invalid_amount", f"amount {amount!r} is not a number") from None
        if value <= 0:
            raise BankError("invalid_amount", "amount must be positive")
        if value > DAILY_TRANSFER_LIMIT:
            raise BankError("over_limit", f"amount above {DAILY_TRANSFER_LIMIT}")
        with self._lock:
            resolved = self.find_payee(customer_id, payee)
            if resolved is None:
                raise BankError("unknown_payee", f"{payee!r} is not a saved payee")
            account = self._account(customer_id, from_account)
            if value > account["available"]:
                raise BankError("insufficient_funds", "not enough available balance")
            account["balance"] = round(account["balance"] - value, 2)
            account["available"] = round(account["available"] - value, 2)
            reference = self._next_reference("TR")
            account["transactions"].insert(
                0,
                {
                    "date": datetime.now().date().isoformat(),
                    "description": f"Transfer to {resolved}",
                    "amount": -value,
                    "reference": reference,
                },
            )
            self._save()
            return TransferResult(reference=reference, new_balance=account["balance"])

    # ------------------------------------------------------------------ cards

    def _card(self, customer_id: Optional[str], card_type: Optional[str]) -> dict[str, Any]:
        for card in self._customer(customer_id)["cards"]:
            if card["type"] == card_type:
                return card
        raise BankError("unknown_card", f"{customer_id} has no {card_type} card")

    def card(self, customer_id: Optional[str], card_type: Optional[str]) -> Optional[dict[str, Any]]:
        with self._lock:
            try:
                return copy.deepcopy(self._card(customer_id, card_type))
            except BankError:
                return None

    def block_card(
        self, customer_id: Optional[str], card_type: Optional[str], reason: Optional[str]
    ) -> dict[str, Any]:
        with self._lock:
            card = self._card(customer_id, card_type)
            card["status"] = "blocked"
            card["block_reason"] = reason or "unspecified"
            self._save()
            return copy.deepcopy(card)

    def order_replacement(
        self, customer_id: Optional[str], card_type: Optional[str], delivery: Optional[str]
    ) -> dict[str, Any]:
        speed = delivery if delivery in REPLACEMENT_DELIVERY_DAYS else "standard"
        with self._lock:
            customer = self._customer(customer_id)
            card = self._card(customer_id, card_type)
            if card["status"] != "blocked":  # the old card stops working once a new one is ordered
                card["status"] = "blocked"
                card["block_reason"] = "replaced"
            order = {
                "reference": self._next_reference("CO"),
                "customer_id": customer_id,
                "card_type": card_type,
                "delivery": speed,
                "fee": REPLACEMENT_FEES[speed],
                "business_days": REPLACEMENT_DELIVERY_DAYS[speed],
                "address": dict(customer["address"]),
            }
            self._data.setdefault("card_orders", []).append(order)
            self._save()
            return copy.deepcopy(order)

    # ------------------------------------------------------------------ profile, fraud

    def update_address(self, customer_id: Optional[str], street: Any, zip_code: Any) -> dict[str, Any]:
        street_text = " ".join(str(street or "").split())
        zip_digits = normalise_digits(zip_code)
        if not street_text or len(zip_digits) != 5:
            raise BankError("invalid_address", "street and a 5-digit ZIP code are required")
        with self._lock:
            customer = self._customer(customer_id)
            old = dict(customer["address"])
            customer["address"] = {"street": street_text, "zip_code": zip_digits}
            self._data.setdefault("address_changes", []).append(
                {"customer_id": customer_id, "old": old, "new": dict(customer["address"])}
            )
            self._save()
            return dict(customer["address"])

    def create_fraud_case(self, customer_id: Optional[str], description: Any) -> str:
        with self._lock:
            self._customer(customer_id)
            case_id = self._next_reference("FR")
            self._data.setdefault("fraud_cases", []).append(
                {"id": case_id, "customer_id": customer_id, "description": str(description or "")}
            )
            self._save()
            return case_id

    # ------------------------------------------------------------------ branches, agents

    def find_branch(self, city: Any) -> Optional[dict[str, Any]]:
        wanted = " ".join(str(city or "").lower().split())
        with self._lock:
            for branch in self._data["branches"]:
                if branch["city"].lower() == wanted:
                    return copy.deepcopy(branch)
        return None

    def branch_cities(self) -> list[str]:
        with self._lock:
            return [branch["city"] for branch in self._data["branches"]]

    @staticmethod
    def agents_available(now: Optional[datetime] = None) -> bool:
        forced = os.environ.get(AGENTS_ENV, "").strip().lower()
        if forced in {"true", "1", "yes"}:
            return True
        if forced in {"false", "0", "no"}:
            return False
        now = now or _eastern_now()
        hours = AGENT_HOURS.get(now.weekday())
        if hours is None:
            return False
        opens, closes = hours
        return opens <= now.time() < closes


_backend: Optional[BankBackend] = None
_backend_lock = threading.Lock()


def get_backend() -> BankBackend:
    """The process-wide backend, loaded on first use."""
    global _backend
    with _backend_lock:
        if _backend is None:
            _backend = BankBackend.load()
        return _backend


def reset_backend() -> None:
    """Forget the loaded backend (tests; picks up a changed ``VOICECALM_BANK_DATA``)."""
    global _backend
    with _backend_lock:
        _backend = None
