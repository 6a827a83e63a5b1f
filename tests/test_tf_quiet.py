"""Users see maasctl's messages, not TensorFlow's oneDNN/CUDA banners."""

import os
import subprocess
import sys


def test_tensorflow_import_is_silent(models):
    code = ("from maasctl.tf import load_tensorflow\n"
            "tf = load_tensorflow()\n"
            f"m = tf.saved_model.load({str(models['small'])!r})\n"
            "print(m.signatures['serving_default'](features=tf.zeros([1, 4]))['output_0'].shape)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MAASCTL"))}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(1, 3)"
    assert r.stderr == ""
