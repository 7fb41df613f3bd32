"""SIPp as the SIP trunk, and a UDP sink recording the RTP the bot sends it (all on 127.0.0.1).

SIPp's SDP points the bot's RTP at the sink (`-key rtp_sink PORT`); SIPp itself sends the caller's
audio from its own sockets. The scenarios live in telephony/sip/; each run happens in a fresh
directory holding the files a scenario plays (`caller_ulaw.wav`, `dtmf_2833_<key>.pcap`).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from voicecalm.voice.wav import ulaw_decode, ulaw_encode

REPO = Path(__file__).resolve().parents[3]
SCENARIOS = REPO / "telephony" / "sip"
SIPP_SHARE = Path("/usr/share/sip-tester")  # Debian sip-tester: dtmf_2833_<key>.pcap
HOST = "127.0.0.1"
PCMU = 0
SIPP_TIMEOUT_SECONDS = 60


def free_udp_port(pairs: bool = False) -> int:
    """A UDP port free on 127.0.0.1 (with `pairs`, also the port two above it, which SIPp binds
    next to its media port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            port = probe.getsockname()[1]
        if not pairs:
            return port
        if port + 2 < 65536:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as above:
                try:
                    above.bind((HOST, port + 2))
                except OSError:
                    continue
            return port


def write_ulaw_wav(path: Path, samples: np.ndarray, rate: int = 8000) -> None:
    """A WAVE_FORMAT_MULAW file (format tag 7), the shape `sox -e mu-law` writes and SIPp's
    rtp_stream plays (it skips the header)."""
    data = ulaw_encode(samples)
    fmt = struct.pack("<HHIIHHH", 7, 1, rate, rate, 1, 8, 0)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def tone(frequency: float, seconds: float, rate: int = 8000, amplitude: float = 12000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def dominant_frequency(samples: np.ndarray, rate: int = 8000) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def voiced(samples: np.ndarray, rate: int = 8000, threshold: float = 500.0) -> np.ndarray:
    """The 20 ms blocks of `samples` louder than `threshold` RMS, joined."""
    block = rate // 50
    blocks = samples[: len(samples) // block * block].reshape(-1, block).astype(np.float64)
    loud = np.sqrt((blocks**2).mean(axis=1)) > threshold
    return blocks[loud].astype(np.int16).ravel()


# --- the RTP sink -----------------------------------------------------------------------------


class RtpSink(asyncio.DatagramProtocol):
    """Records the payloads of the RTP packets the bot sends, per payload type."""

    def __init__(self) -> None:
        self.payloads: dict[int, list[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[0] >> 6 != 2:
            return  # not RTP (RTCP goes to the port above)
        header = 12 + 4 * (data[0] & 0x0F)
        self.payloads.setdefault(data[1] & 0x7F, []).append(data[header:])

    def pcm(self, payload_type: int = PCMU) -> np.ndarray:
        """The bot's audio as 8 kHz samples, in arrival order (loopback does not reorder)."""
        return ulaw_decode(b"".join(self.payloads.get(payload_type, [])))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def open_rtp_sink() -> tuple[RtpSink, int]:
    loop = asyncio.get_running_loop()
    _, sink = await loop.create_datagram_endpoint(RtpSink, local_addr=(HOST, 0))
    assert sink.transport is not None
    return sink, sink.transport.get_extra_info("sockname")[1]


# --- SIPp -------------------------------------------------------------------------------------


@dataclass
class SippResult:
    exit_code: int
    messages: str  # SIPp's message trace: every SIP message sent and received
    output: str
    errors: str

    def first_lines(self) -> list[str]:
        """Request and status lines in wire order (a sipfrag body's status line included)."""
        starts = ("SIP/2.0 ", "INVITE ", "ACK ", "BYE ", "INFO ", "REFER ", "NOTIFY ", "CANCEL ")
        return [line.strip() for line in self.messages.splitlines() if line.strip().startswith(starts)]


async def run_sipp(
    scenario: str,
    workdir: Path,
    *,
    target_port: int,
    rtp_sink_port: int,
    service: str = "bot",
    calls: int = 1,
    variables: dict[str, str] | None = None,
    caller_audio: Path | None = None,
) -> SippResult:
    """Run one SIPp scenario from telephony/sip/ against our user agent until it finishes."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIOS / scenario, workdir / scenario)
    if caller_audio is not None:
        shutil.copy(caller_audio, workdir / "caller_ulaw.wav")
    for pcap in SIPP_SHARE.glob("dtmf_2833_*.pcap"):
        if not (workdir / pcap.name).exists():
            (workdir / pcap.name).symlink_to(pcap)
    messages = workdir / "messages.log"
    errors = workdir / "errors.log"
    args = [
        shutil.which("sipp") or "sipp",
        f"{HOST}:{target_port}",
        "-sf", scenario,
        "-s", service,
        "-i", HOST,
        "-mi", HOST,
        "-p", str(free_udp_port()),
        "-mp", str(free_udp_port(pairs=True)),
        "-cp", str(free_udp_port()),
        "-key", "rtp_sink", str(rtp_sink_port),
        "-m", str(calls),
        "-l", str(calls),
        "-r", str(calls),
        "-nostdin",
        "-trace_msg", "-message_file", str(messages),
        "-trace_err", "-error_file", str(errors),
    ]  # fmt: skip
    for name, value in (variables or {}).items():
        args += ["-set", name, value]
    process = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), SIPP_TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return SippResult(
        exit_code=process.returncode,
        messages=messages.read_text(errors="replace") if messages.exists() else "",
        output=output.decode(errors="replace"),
        errors=errors.read_text(errors="replace") if errors.exists() else "",
    )
