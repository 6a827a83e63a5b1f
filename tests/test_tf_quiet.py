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


def test_other_threads_lines_survive_the_quiet_import():
    """Only TensorFlow's C++ log lines are dropped while it imports: a line another thread writes meanwhile
    (through sys.stderr or straight to fd 2, an unfinished last line too) still reaches stderr, in order."""
    code = ("import os, sys, threading, time\n"
            "from maasctl.tf import load_tensorflow\n"
            "stop = threading.Event()\n"
            "def chatter():\n"
            "    i = 0\n"
            "    while not stop.is_set():\n"
            "        print(f'py {i}', file=sys.stderr, flush=True); os.write(2, f'fd {i}\\n'.encode()); i += 1\n"
            "        time.sleep(0.05)\n"
            "t = threading.Thread(target=chatter); t.start()\n"
            "load_tensorflow()\n"
            "stop.set(); t.join()\n"
            "os.write(2, b'last, no newline')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MAASCTL"))}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.split("\n")
    assert lines[-1] == "last, no newline"
    n = sum(line.startswith("py ") for line in lines)
    assert n > 5, r.stderr  # the import takes seconds
    assert lines[:-1] == [f"{kind} {i}" for i in range(n) for kind in ("py", "fd")], r.stderr
