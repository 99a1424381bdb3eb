"""Runs in the Akida encoder environment (``.ci/akida-full-env``), as a file, for `akida_encoder`.

    python akida_encoder_worker.py job.json      # prints one line of JSON

Jobs (JSON; arrays as ``.npy``, no pickle):

* ``{"action": "convert", "onnx", "calibration", "out", "devices"}``: onnxscript's optimiser,
  QuantizeML (8-bit weights and activations, uint8 input) calibrated on the ``uint8 [n, H, W, 3]``
  images, CNN2SNN conversion to Akida 2.0, a mapping attempt onto each named virtual device;
  saves ``out`` (``.fbz``) and prints sizes, versions and the mappings.
* ``{"action": "features", "model", "images", "out"}``: the model on ``uint8 [n, 3, H, W]``
  images in Akida's software backend; saves the features ``float32 [n, D]`` to ``out``.

It imports nothing of spikebridge (not installed there).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# run as a file, this folder is first on sys.path: its akida.py would shadow the akida package
sys.path = [p for p in sys.path if os.path.realpath(p or ".") != os.path.dirname(os.path.realpath(__file__))]

import numpy as np  # noqa: E402


def convert(job: dict) -> dict:
    import akida
    import cnn2snn
    import onnx
    import quantizeml
    from onnxscript import optimizer
    from quantizeml.models import QuantizationParams, quantize

    t0 = time.perf_counter()
    images = np.load(job["calibration"], allow_pickle=False)  # uint8 [n, H, W, 3]
    samples = images.transpose(0, 3, 1, 2).astype(np.float32)
    graph = optimizer.optimize(onnx.load(job["onnx"]))
    qparams = QuantizationParams(input_dtype="uint8", weight_bits=8, activation_bits=8, output_bits=8)
    quantized = quantize(graph, qparams=qparams, samples=samples, num_samples=len(samples), batch_size=16)
    model = cnn2snn.convert(quantized)
    seconds = time.perf_counter() - t0
    model.save(job["out"])
    mappings = {}
    for name in job["devices"]:
        device = getattr(akida.virtual_devices, name)()
        mapped = akida.Model(job["out"])
        try:
            mapped.map(device, hw_only=True)
        except Exception as exc:  # the mapper's refusal is the measurement
            mappings[name] = {"mapped": False, "error": str(exc).splitlines()[0][:300]}
            continue
        sequences = mapped.sequences
        nps = [n for s in sequences for p in s.passes for layer in p.layers if layer.mapping for n in layer.mapping.nps]
        mappings[name] = {"mapped": True, "sequences": len(sequences), "passes": sum(len(s.passes) for s in sequences),
                          "neural_processors": len(nps), "program_bytes": int(sum(len(s.program or b"") for s in sequences))}
    return {"layers": len(model.layers), "akida_version": str(cnn2snn.get_akida_version()),
            "quantization": {"weight_bits": 8, "activation_bits": 8, "input_dtype": "uint8",
                             "calibration_images": int(len(samples))},
            "versions": {"akida": akida.__version__, "cnn2snn": cnn2snn.__version__, "quantizeml": quantizeml.__version__,
                         "onnx": onnx.__version__},
            "convert_seconds": seconds, "fbz_bytes": os.path.getsize(job["out"]), "mappings": mappings}


def features(job: dict) -> dict:
    import akida

    model = akida.Model(job["model"])
    images = np.load(job["images"], allow_pickle=False)
    out = model.predict(np.ascontiguousarray(images, dtype=np.uint8))
    np.save(job["out"], out.reshape(len(out), -1).astype(np.float32))
    return {"images": int(len(images))}


def main() -> None:
    job = json.loads(open(sys.argv[1]).read())
    result = {"convert": convert, "features": features}[job["action"]](job)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
