"""The ONNX export needs no onnxscript (not a dependency): checked where it is installed too."""

import subprocess
import sys
from pathlib import Path

PROBE = """
import importlib.abc, sys
from pathlib import Path

class NoOnnxscript(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("onnxscript", "onnx_ir"):
            raise ModuleNotFoundError(name, name=name)

sys.meta_path.insert(0, NoOnnxscript())
from transformers import BertConfig, BertModel
from ranking_build.models import SentenceEncoder
from ranking_build.onnx_export import export_onnx
from ranking_gateway.core.contract import ENCODER

out = Path(sys.argv[1])
config = BertConfig(vocab_size=1100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
BertModel(config).save_pretrained(str(out / "hf"))
result = export_onnx(SentenceEncoder(out / "hf"), ENCODER, out / "tiny.onnx")
print(result.max_abs_diff)
"""


def test_export_runs_without_onnxscript(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert float(run.stdout.strip().splitlines()[-1]) < 1e-3 and (tmp_path / "tiny.onnx").is_file()
