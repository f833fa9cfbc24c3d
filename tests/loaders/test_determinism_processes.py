"""Same seed, same batches in two processes, for both loaders.

Within one process a loader can look deterministic while it depends on something that
changes from one process to the next (string hashing, set order, a global random state):
two fresh interpreters with different ``PYTHONHASHSEED`` read the same folder here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

HASH_BATCHES = """
import hashlib, json, sys

import numpy as np

import genaug

def digest(batches):
    sha = hashlib.sha256()
    for batch in batches:
        for column in batch:
            sha.update(np.ascontiguousarray(np.asarray(column)).tobytes())
    return sha.hexdigest()

folder = sys.argv[1]
options = dict(image_size=(16, 16), batch_size=6, seed=7, verbose=False)
dataset = genaug.image_dataset_from_directory(folder, **options)
generator = genaug.BalancedBatchGenerator(folder, **options)
out = {}
for epoch in range(2):  # the second epoch reshuffles from (seed, epoch)
    out[f"tf.data epoch {epoch}"] = digest(dataset.as_numpy_iterator())
    out[f"PyDataset epoch {epoch}"] = digest(generator[i] for i in range(len(generator)))
    generator.on_epoch_end()
print(json.dumps(out))
"""


def hashes_in_a_fresh_process(folder, hash_seed: str) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", HASH_BATCHES, str(folder)], env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_same_seed_same_batches_in_two_processes(small_dataset):
    first = hashes_in_a_fresh_process(small_dataset, "0")
    second = hashes_in_a_fresh_process(small_dataset, "1")
    assert first == second
    assert len(set(first.values())) == 4  # each epoch and loader hashed its own batches
