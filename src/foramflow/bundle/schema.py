"""model.json: what a bundle says about its network, as a validated schema.

Only the :mod:`foramflow.bundle` package spells model.json's keys and the bundle's file
names (defined here); every other module reads and writes a bundle's description through
:class:`BundleMeta` attributes and :class:`~foramflow.bundle.folder.Bundle` methods.

The input size is the preprocessing's (``preprocessing.params.size``). The ``input`` block
is written for readers outside foramflow (ParticleTrieur, MISO); foramflow only checks it
against the preprocessing when a bundle is read.

Keys this schema does not know are kept, so that bundles written by other versions load and
are written back whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)

from foramflow.errors import ForamflowError, InvalidInput
from foramflow.imaging.preprocess import PreprocessSpec
from foramflow.io.class_names import distinct_class_names

BUNDLE_FORMAT = "foramflow-bundle/1"
DEFAULT_THRESHOLD = 0.8

# The files of a bundle folder.
MODEL_FILE = "model.onnx"
META_FILE = "model.json"
NETWORK_INFO_FILE = "network_info.xml"
INT8_FILE = "model.int8.onnx"
# The network as ParticleTrieur and MISO run it (see :mod:`foramflow.bundle.nhwc`).
NHWC_FILE = "model.nhwc.onnx"
# The same weights reading each image once, run first by the cascade
# (see :mod:`foramflow.bundle.cascade`).
ONE_VIEW_FILE = "model.one_view.onnx"
# Its int8 copy, made and checked on the validation split at training time.
ONE_VIEW_INT8_FILE = "model.one_view.int8.onnx"
REFERENCE_FILE = "reference_features.npz"
VALIDATION_FILE = "validation.npz"
CALIBRATION_DIR = "calibration"
# The bundles of a training run's folder: its network, and (for networks that answer from
# the mean of several views of an image) the same weights reading each image once.
RUN_BUNDLE = "bundle"
ONE_VIEW_BUNDLE = "bundle_fast"

#: The records of reduced-precision checks (fields of :class:`BundleMeta`), which describe
#: one model.onnx and are redone when it changes.
BF16_RECORD, INT8_RECORD = "bf16", "int8"
PRECISION_RECORDS = (BF16_RECORD, INT8_RECORD)

# The names of the network's input and output tensors in model.onnx.
INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


class BundleError(ForamflowError, ValueError):
    """A bundle is missing a file, holds an invalid description, or a network that cannot be
    loaded or does not match its description; the message names the file."""


def threshold_problem(value: float, *, what: str = "threshold") -> str | None:
    """Why ``value`` cannot be a threshold, or None: it must lie in (0.5, 1.0] or be 0."""
    if value == 0.0 or 0.5 < value <= 1.0:
        return None
    return f"{what} must lie in (0.5, 1.0], or be 0 to switch it off; got {value:g}"


def validate_threshold(value: float, *, what: str = "threshold") -> float:
    """Return ``value`` as float if it lies in (0.5, 1.0] or is 0; raise ValueError otherwise."""
    value = float(value)
    problem = threshold_problem(value, what=what)
    if problem:
        raise InvalidInput(problem)
    return value


def describe_input(channels: int, size: int) -> str:
    """An input shape as messages give it: ``16 × 16 px, 1 channel``."""
    return f"{size} × {size} px, {channels} channel{'' if channels == 1 else 's'}"


class _Open(BaseModel):
    """A part of model.json: keys it does not know are kept."""

    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict:
        """This part as model.json holds it (absent fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


class ModelInfo(_Open):
    """The architecture the network was built from, to rebuild it from a checkpoint."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class InputInfo(_Open):
    """The network input as MISO and ParticleTrieur read it."""

    name: str | None = None
    shape: list[str | int] | None = None
    size: int
    channels: int
    dtype: str | None = None
    range: list[float] | None = None

    @classmethod
    def of(cls, spec: PreprocessSpec, name: str = INPUT_NAME) -> InputInfo:
        """The input block of a network that reads what ``spec`` gives."""
        return cls(
            name=name,
            shape=["batch", spec.channels, spec.size, spec.size],
            size=spec.size,
            channels=spec.channels,
            dtype="float32",
            range=[0.0, 1.0],
        )


# The validators of model.json's fields raise ValueError, as pydantic expects: the reader
# (parse_meta) turns the ValidationError into a BundleError naming the file and the field.


def _input_block(value):
    """An input block must give a whole size and number of channels."""
    if value is None or isinstance(value, InputInfo):
        return value
    try:
        int(value["size"]), int(value["channels"])
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"input must give size and channels, not {value!r}") from None
    return value


class OutputInfo(_Open):
    name: str | None = None
    shape: list[str | int] | None = None
    kind: str | None = None

    @classmethod
    def of(cls, n_labels: int, name: str = OUTPUT_NAME) -> OutputInfo:
        return cls(name=name, shape=["batch", n_labels], kind="softmax")


#: The temperatures a calibration may hold: outside them every image becomes "unsure" (a
#: temperature near 0 sharpens, a large one flattens, the probabilities beyond use).
TEMPERATURE_RANGE = (0.05, 20.0)


def _temperature(value):
    """A finite temperature within :data:`TEMPERATURE_RANGE`, or None."""
    if value is None:
        return None
    low, high = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"temperature must be a number, not {value!r}")
    if not low <= value <= high:  # also false for NaN
        raise ValueError(f"temperature must lie in [{low:g}, {high:g}], not {value!r}")
    return float(value)


class Calibration(_Open):
    """Temperature scaling and what it was fitted on (``foramflow calibrate``)."""

    method: str | None = None
    temperature: Annotated[float | None, BeforeValidator(_temperature)] = None
    n_images: int | None = None
    nll_before: float | None = None
    nll_after: float | None = None
    ece_before: float | None = None
    ece_after: float | None = None
    class_bias: dict[str, float] | None = None
    target_precision: float | None = None
    top_probability_quantiles: list[float] | None = None


class ValidationConfusion(_Open):
    """The validation confusion matrix (rows true, columns predicted) and its labels."""

    labels: list[str]
    matrix: list[list[int]]


class TrainingSet(_Open):
    source: str | None = None
    hash: str | None = None
    n_images: int | None = None
    n_train: int | None = None
    n_validation: int | None = None
    counts: dict[str, int] | None = None
    dropped_classes: dict[str, int] | None = None
    min_per_class: int | None = None
    skipped_images: int | None = None


class TrainingInfo(_Open):
    epochs: int | None = None
    best_epoch: int | None = None
    time_s: float | None = None
    time_per_image_ms: float | None = None
    val_fraction: float | None = None
    seed: int | None = None
    schedule: str | None = None
    augment: bool | None = None


class PriorCorrection(_Open):
    """The class weights the network trained with, divided out of its outputs.

    A loss weighted by class (w_k) teaches a network p(k | x) · w_k; the exported network's
    final bias is lowered by log w_k, so that its probabilities are those of the training
    set's own class mix (logit adjustment) and the abundance step's prior adjustment (EM)
    starts from calibrated probabilities.
    """

    class_weights: dict[str, float]


class TransferInfo(_Open):
    """How a transfer-learning bundle's head computes its vectors, and where they are kept."""

    extractor: dict[str, Any]
    extractor_key: str | None = None
    weights_path: str | None = None
    feature_cache: str | None = None
    reference_file: str | None = None
    augmented_copies: int | None = None


class PrecisionCheck(_Open):
    """How a reduced-precision network agrees with fp32 (see :mod:`foramflow.bundle.engine`);
    ``file`` names the int8 copy of the network."""

    def with_file_in(self, folder: Path) -> PrecisionCheck:
        """The record with its model file (if any) as an absolute path in ``folder``."""
        if not self.file:
            return self
        return self.model_copy(update={"file": str(folder.resolve() / self.file)})

    file: str | None = None
    runtime: str | None = None
    method: str | None = None
    calibration_images: int | None = None
    check_images: int | None = None
    top1_agreement: float | None = None
    max_probability_change: float | None = None
    # bf16 only: top-1 agreement once close calls are recomputed in fp32, on held-out images,
    # and the share of images recomputed.
    rechecked_agreement: float | None = None
    recheck_share: float | None = None
    # SHA-256 of the model.onnx checked, and of the int8 file: a record describes those bytes.
    model_sha256: str | None = None
    file_sha256: str | None = None
    # int8 made at training time: top-1 on the validation split, and fp32's on the same images.
    validation_images: int | None = None
    validation_top1: float | None = None
    fp32_validation_top1: float | None = None
    # int8: the bits of its weights; 8 are exact only on CPUs that add int8 products in 32
    # bits (see :mod:`foramflow.bundle.int8_exact`), 7 (or None, older copies) on any.
    weight_bits: Literal[7, 8] | None = None


class CascadeCheck(_Open):
    """The cascade of :mod:`foramflow.bundle.cascade`, chosen on the validation split: the
    one-view network answers where its two best classes lie at least ``margin`` apart, the
    network reading every turn elsewhere."""

    margin: float
    one_view_temperature: float = 1.0
    validation_images: int
    rechecked_share: float  # of the validation images, sent to the full network
    top1: float  # the cascade's validation top-1
    held_out_top1: float | None = None  # each half judged by the margin chosen on the other
    full_top1: float  # the full network's
    one_view_top1: float
    # SHA-256 of the model.onnx and the one-view file it was chosen for.
    model_sha256: str
    file_sha256: str
    # The networks each stage runs (fp32 or int8 copies), and the full stage's file's hash
    # where it is not model.onnx itself. A full stage of model.one_view.onnx runs it on each
    # of the ``views`` the full network averages (its four turns; eight with the mirror
    # image's), reusing the first stage's answer for the image as it lies where that stage
    # ran the same file: the full network's answer, for less work.
    one_view_file: str = ONE_VIEW_FILE
    full_file: str = MODEL_FILE
    full_file_sha256: str | None = None
    views: Literal[4, 8] = 4
    # The bits of the weights of the int8 copy a stage runs (None: none does): 7-bit
    # weights run exactly on any CPU, 8-bit ones only where foramflow.bundle.int8_exact
    # says so.
    int8_weight_bits: Literal[7, 8] | None = None

    @field_validator("one_view_file", "full_file")
    @classmethod
    def _a_file_of_the_bundle(cls, value: str, info) -> str:
        """Only the bundle's own files: a record must not point a stage outside it."""
        allowed = {
            "one_view_file": (ONE_VIEW_FILE, ONE_VIEW_INT8_FILE),
            "full_file": (MODEL_FILE, INT8_FILE, ONE_VIEW_FILE, ONE_VIEW_INT8_FILE),
        }[info.field_name]
        if value not in allowed:
            raise ValueError(f"must be {' or '.join(allowed)}, not {value!r}")
        return value


def _preprocessing(value) -> PreprocessSpec:
    if isinstance(value, PreprocessSpec):
        return value
    try:
        return PreprocessSpec.from_dict(value)
    except KeyError as err:
        raise ValueError(f"invalid preprocessing (no {err})") from None
    except (TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"invalid preprocessing ({err})") from None


def _threshold(value, what: str = "threshold") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, not {value!r}")
    return validate_threshold(value, what=what)


def _class_thresholds(values) -> dict[str, float] | None:
    if values is None:
        return None
    if not isinstance(values, dict):
        raise ValueError("class_thresholds must map labels to thresholds")
    return {
        label: _threshold(value, what=f"class threshold of {label!r}")
        for label, value in values.items()
    }


class BundleMeta(_Open):
    """The contents of model.json."""

    format: str = BUNDLE_FORMAT
    name: str | None = None
    description: str | None = None
    created: str | None = None
    model: ModelInfo | None = None
    labels: list[str] = Field(description="the class names")
    input: Annotated[InputInfo | None, BeforeValidator(_input_block)] = None
    output: OutputInfo | None = None
    preprocessing: Annotated[
        PreprocessSpec,
        PlainValidator(_preprocessing),
        PlainSerializer(lambda spec: spec.to_dict(), return_type=dict),
    ] = Field(description="how images are prepared")
    threshold: Annotated[float | None, BeforeValidator(_threshold)] = None
    class_thresholds: Annotated[dict[str, float] | None, BeforeValidator(_class_thresholds)] = None
    calibration: Calibration | None = None
    metrics: dict[str, Any] | None = None
    validation_confusion: ValidationConfusion | None = None
    inference_ms_per_image: float | None = None
    training_set: TrainingSet | None = None
    training: TrainingInfo | None = None
    transfer: TransferInfo | None = None
    prior_correction: PriorCorrection | None = None
    software: dict[str, str] | None = None
    bf16: PrecisionCheck | None = None
    int8: PrecisionCheck | None = None
    cascade: CascadeCheck | None = None
    # The cascade with the one view's int8 copy in a stage, where that is faster still; run
    # where this CPU computes its int8 copy exactly, the fp32 cascade elsewhere.
    cascade_int8: CascadeCheck | None = None

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value != BUNDLE_FORMAT:
            raise ValueError(f"unknown bundle format {value!r}")
        return value

    @field_validator("labels", mode="before")
    @classmethod
    def _class_names(cls, labels):
        if not (
            isinstance(labels, list) and labels and all(isinstance(x, str) and x for x in labels)
        ):
            raise ValueError(f"labels must be a list of class names, not {labels!r}")
        return distinct_class_names(labels)

    @model_validator(mode="after")
    def _consistent(self) -> BundleMeta:
        spec = self.preprocessing
        declared = self.input
        if declared is not None and (declared.channels, declared.size) != (
            spec.channels,
            spec.size,
        ):
            raise ValueError(
                f"input is {describe_input(declared.channels, declared.size)} but the "
                f"preprocessing gives {describe_input(spec.channels, spec.size)}"
            )
        for label in self.class_thresholds or {}:
            if label not in self.labels:
                raise ValueError(f"class threshold for unknown label {label!r}")
        return self

    @property
    def input_size(self) -> int:
        """The width (and height) of the network input, in pixels."""
        return self.preprocessing.size

    @property
    def channels(self) -> int:
        return self.preprocessing.channels

    def defaults_taken(self) -> list[str]:
        """Notes on the defaults taken for the fields model.json may leave out."""
        notes = []
        if self.input is None:
            shape = describe_input(self.channels, self.input_size)
            notes.append(f"{META_FILE} has no input: taking {shape} from the preprocessing")
        if self.threshold is None:
            notes.append(f"{META_FILE} has no threshold: using {DEFAULT_THRESHOLD}")
        return notes

    def precision_records(self) -> dict[str, dict]:
        """The reduced-precision records this description holds, as model.json holds them."""
        records = {name: getattr(self, name) for name in PRECISION_RECORDS}
        return {name: record.to_json() for name, record in records.items() if record is not None}

    def merged(self, **fields) -> BundleMeta:
        """A copy with ``fields`` replaced (None removes one), validated again."""
        data = self.to_json()
        for name, value in fields.items():
            data[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        return type(self).model_validate(data)

    def without(self, *names: str) -> BundleMeta:
        """A copy without the fields ``names``."""
        return self.merged(**dict.fromkeys(names))


def parse_meta(data, where: str | Path) -> BundleMeta:
    """Validate a model.json object; anything classification cannot rely on is a
    :class:`BundleError` naming ``where`` and the field."""
    if not isinstance(data, dict):
        raise BundleError(f"{where}: not a bundle description (a JSON object)")
    if data.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where}: unknown bundle format {data.get('format')!r}")
    try:
        return BundleMeta.model_validate(data)
    except ValidationError as err:
        raise BundleError(f"{where}: {_first_problem(err)}") from None


def _first_problem(err: ValidationError) -> str:
    problem = err.errors(include_url=False)[0]
    field = ".".join(str(part) for part in problem["loc"])
    if problem["type"] == "missing":
        described = BundleMeta.model_fields.get(field)
        what = f" ({described.description})" if described and described.description else ""
        return f"no '{field}'{what}"
    if problem["type"] == "value_error":
        message = str(problem["ctx"]["error"])
        return f"{field}: {message}" if len(problem["loc"]) > 1 else message
    return f"{field}: {problem['msg']}"
