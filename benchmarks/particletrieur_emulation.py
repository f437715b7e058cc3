"""ParticleTrieur 3.0.5's classification path, in Python, for benchmarks/interop.py.

Runs in a Python with onnxruntime 1.12.1 (ParticleTrieur's pom.xml), numpy < 2 and OpenCV,
not in foramflow's environment. It does what ParticleTrieur's Java does with a
network_info.xml whose <protobuf> ends in "onnx":

* NetworkInfo: <protobuf> relative to the XML's folder, the input size and channels of the
  first <input>, the class codes of <labels> in output order;
* OnnxNetwork.setup: a session from the model file's bytes with default options, fed
  through its first input;
* CNNPredictionService: batches of 16 images, each a float32 (N, H, W, C) buffer;
* ImageProcessingService.processForNetwork (without the project's own processing):
  OpenCV decodes the file as 8-bit BGR, turns it grey (BGR2GRAY) for a one-channel network,
  divides by 255, pads it to a square with the median of its border (the middle element of
  the sorted border pixels), resizes it with OpenCV's default bilinear interpolation, and
  hands a colour image over as RGB.

    python particletrieur_emulation.py network_info.xml --batch nhwc.npy --out probs.npy
    python particletrieur_emulation.py network_info.xml --images paths.txt --out probs.npy
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

BATCH = 16  # CNNPredictionService


class Network:
    """OnnxNetwork with its NetworkInfo."""

    def __init__(self, xml_path: Path):
        root = ET.parse(xml_path).getroot()
        protobuf = root.findtext("protobuf")
        if not protobuf.endswith("onnx"):
            raise SystemExit(f"{xml_path}: <protobuf> {protobuf} is not an ONNX file")
        tensor = root.find("inputs").findall("input")[0]
        self.height, self.width, self.channels = (
            int(tensor.findtext(k)) for k in ("height", "width", "channels")
        )
        self.labels = [label.findtext("code") for label in root.find("labels").findall("label")]
        model = (xml_path.parent / protobuf).read_bytes()
        self.session = ort.InferenceSession(model, ort.SessionOptions())
        self.input_name = self.session.get_inputs()[0].name

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for an (N, H, W, C) float32 batch, 16 at a time."""
        out = [
            self.session.run(None, {self.input_name: np.ascontiguousarray(batch[i : i + BATCH])})[0]
            for i in range(0, len(batch), BATCH)
        ]
        return np.concatenate(out)

    def process_for_network(self, path: Path) -> np.ndarray:
        """ImageProcessingService.processForNetwork(mat, networkInfo), then
        NetworkBase.matToFloatArray: (H, W, C) float32."""
        mat = cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR)
        if mat is None:
            raise ValueError(f"{path}: OpenCV cannot decode it")
        if self.channels == 1:
            working = cv2.cvtColor(mat, cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
        else:
            working = mat.astype(np.float32)
        working = working / 255.0
        working = make_square(working)
        resized = cv2.resize(working, (self.width, self.height))  # INTER_LINEAR
        if resized.ndim == 2:
            resized = resized[..., None]
        if resized.shape[2] == 3:
            resized = resized[..., ::-1]  # BGR2RGB
        return np.ascontiguousarray(resized, dtype=np.float32)


def border_median(image: np.ndarray) -> list[float]:
    """BorderRemovalProcessor.getMedianOfBorder32F, as written: per channel the element at
    half the length of the sorted border pixels (corners counted twice), where the bottom
    row is read from the first channel whatever the channel."""
    channels = image.shape[2]
    values = []
    for ch in range(channels):
        border = np.concatenate(
            [image[0, :, ch], image[-1, :, 0], image[:, 0, ch], image[:, -1, ch]]
        )
        values.append(float(np.sort(border)[len(border) // 2]))
    return values


def make_square(image: np.ndarray) -> np.ndarray:
    """BorderRemovalProcessor.makeSquareUsingMedianOfBorder on the working image."""
    height, width = image.shape[:2]
    if height == width:
        return image
    top = bottom = left = right = 0
    if width > height:
        top, bottom = (width - height) // 2, (width - height + 1) // 2
    else:
        left, right = (height - width) // 2, (height - width + 1) // 2
    value = border_median(image)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    return padded if padded.ndim == 3 else padded[..., None]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("network_info", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--batch", type=Path, help="an (N, H, W, C) float32 .npy to classify")
    source.add_argument("--images", type=Path, help="a text file of image paths, one a line")
    parser.add_argument("--out", type=Path, required=True, help="where to save probabilities")
    args = parser.parse_args(argv)
    network = Network(args.network_info)
    if args.batch:
        batch = np.load(args.batch)
    else:
        paths = [Path(line) for line in args.images.read_text().splitlines() if line]
        batch = np.stack([network.process_for_network(p) for p in paths])
    probabilities = network.classify(batch)
    if probabilities.shape[1] != len(network.labels):
        raise SystemExit(
            f"the network gives {probabilities.shape[1]} outputs for {len(network.labels)} labels"
        )
    np.save(args.out, probabilities)
    print(f"onnxruntime {ort.__version__}, {len(batch)} images, input {network.input_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
