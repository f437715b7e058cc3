"""One self-contained HTML page per evaluation: open it in any browser, mail it, archive it.

Figures and example images are embedded as base64 PNG so that the page has no loose files.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import jinja2
import numpy as np
from PIL import Image

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("foramflow.evaluate", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
)


def png_data_uri(path_or_bytes: str | Path | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def thumbnail_uri(image: np.ndarray, size: int = 96) -> str:
    """A preprocessed (C, S, S) image in [0, 1] as an embeddable PNG thumbnail."""
    array = np.asarray(image, dtype=np.float32)
    array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    pil = Image.fromarray((np.clip(array, 0, 1) * 255).astype(np.uint8))
    pil = pil.resize((size, size), Image.BILINEAR)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    return png_data_uri(buffer.getvalue())


def example_images(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    *,
    per_class: int = 6,
    seed: int = 0,
) -> dict[str, list[dict]]:
    """A few validation images per class, each marked with its prediction."""
    rng = np.random.default_rng(seed)
    examples = {}
    for k, name in enumerate(classes):
        index = np.flatnonzero(y_true == k)
        chosen = rng.choice(index, size=min(per_class, len(index)), replace=False)
        examples[name] = [
            {
                "uri": thumbnail_uri(images[i]),
                "predicted": classes[y_pred[i]],
                "correct": bool(y_pred[i] == k),
            }
            for i in sorted(chosen)
        ]
    return examples


def confusion_examples(
    images: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    classes: list[str],
    worst: list[dict],
    *,
    per_pair: int = 4,
) -> list[dict]:
    """The worst confusions, each with a few of the images that were confused."""
    index = {name: i for i, name in enumerate(classes)}
    pairs = []
    for pair in worst:
        rows = np.flatnonzero(
            (y_true == index[pair["true"]]) & (y_pred == index[pair["predicted"]])
        )
        pairs.append({**pair, "uris": [thumbnail_uri(images[i]) for i in rows[:per_pair]]})
    return pairs


def write_report(path: str | Path, **context) -> Path:
    """Render ``report.html`` with the given context (see the template for the fields)."""
    path = Path(path)
    path.write_text(_ENV.get_template("report.html").render(**context))
    return path
