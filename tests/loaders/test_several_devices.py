"""Balanced batches on several devices: a distribution strategy gives each replica
consecutive slots of the global batch, so each replica's share must be balanced on its own.

``tf.distribute.MirroredStrategy`` and Keras 3's ``keras.distribution.DataParallel`` (JAX) run
on one machine with 2 logical CPU devices, which must be configured before the backend
initialises: in a subprocess.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import genaug

COUNTS = {"a": 20, "b": 5, "c": 9, "d": 3}

MIRRORED = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import genaug

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    options = dict(balance="balanced_batches", batch_size=10, epoch_size=60, image_size=(8, 8),
                   seed=0)
    dataset = genaug.image_dataset_from_directory(sys.argv[1], verbose=False, **options)
    shares = []  # per global batch, each replica's class counts
    for _, labels in strategy.experimental_distribute_dataset(dataset):
        shares.append([np.bincount(np.asarray(part), minlength=4).tolist()
                       for part in strategy.experimental_local_results(labels)])
    losses = {}
    for name, data in (("tf.data", dataset),
                       ("pydataset", genaug.BalancedBatchGenerator(sys.argv[1], **options))):
        with strategy.scope():
            model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                                      keras.layers.Flatten(), keras.layers.Dense(4)])
            model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        losses[name] = model.fit(data, epochs=2, verbose=0).history["loss"]
    print(json.dumps({"replicas": strategy.num_replicas_in_sync, "shares": shares,
                      "losses": losses}))
""")


def test_each_replica_share_is_balanced_under_mirrored_strategy_and_fit_ends(
        image_folder_factory):
    pytest.importorskip("tensorflow")
    root = image_folder_factory(COUNTS, size=(8, 8))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": "",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", MIRRORED, str(root)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert len(result["shares"]) == 6  # 60 slots in global batches of 10
    for shares in result["shares"]:
        assert [sum(share) for share in shares] == [5, 5]
        for share in shares:  # 5 slots over 4 classes: one class twice, the others once
            assert sorted(share) == [1, 1, 1, 2], result["shares"]
    for losses in result["losses"].values():  # both loaders trained both epochs
        assert len(losses) == 2 and all(np.isfinite(losses))


DATA_PARALLEL = textwrap.dedent("""
    import json, sys
    import jax
    import keras
    import numpy as np
    import genaug

    distribution = keras.distribution.DataParallel()
    keras.distribution.set_distribution(distribution)

    class RecordingGenerator(genaug.BalancedBatchGenerator):
        def __getitem__(self, index):
            batch = super().__getitem__(index)
            labels_seen.append(np.asarray(batch[1]))
            return batch

    class ShardingProbe(keras.Sequential):
        def train_step(self, state, data):  # traced by fit: the labels as fit shards them
            jax.debug.inspect_array_sharding(data[1], callback=shardings_in_fit.append)
            return super().train_step(state, data)

    labels_seen, shardings_in_fit = [], []
    generator = RecordingGenerator(sys.argv[1], balance="balanced_batches", batch_size=8,
                                   epoch_size=40, image_size=(8, 8), seed=0, verbose=False)
    model = ShardingProbe([keras.Input((8, 8, 3)), keras.layers.Rescaling(1 / 255),
                           keras.layers.Flatten(), keras.layers.Dense(4)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    losses = model.fit(generator, epochs=2, verbose=0).history["loss"]

    # The rows each device holds, from the sharding fit gave the labels; the same rows come out
    # of jax.device_put with the distribution's data layout.
    sharding = shardings_in_fit[0]
    layout = distribution.get_data_layout((8,)).backend_layout
    rows = {device.id: index[0] for device, index in sharding.devices_indices_map((8,)).items()}
    shares = []  # per batch fit drew, each device's class counts
    for labels in labels_seen:
        placed = {shard.device.id: np.asarray(shard.data)
                  for shard in jax.device_put(labels, layout).addressable_shards}
        assert all((placed[d] == labels[rows[d]]).all() for d in rows), (placed, rows)
        shares.append([np.bincount(labels[rows[d]], minlength=4).tolist()
                       for d in sorted(rows)])
    print(json.dumps({
        "devices": [len(jax.devices()), int(distribution.device_mesh.devices.size)],
        "same_sharding": bool(sharding.is_equivalent_to(layout, 1)),
        "rows": [[rows[d].start, rows[d].stop] for d in sorted(rows)],
        "shares": shares, "losses": losses, "tensorflow": "tensorflow" in sys.modules}))
""")


def test_each_device_shard_is_balanced_under_jax_data_parallel_and_fit_ends(
        image_folder_factory):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed (the project's 'jax' extra)")
    root = image_folder_factory(COUNTS, size=(8, 8))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "CUDA_VISIBLE_DEVICES": "", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", DATA_PARALLEL, str(root)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == [2, 2]
    assert result["same_sharding"]  # fit shards the batch axis with the distribution's layout
    assert result["rows"] == [[0, 4], [4, 8]]  # consecutive halves
    assert len(result["shares"]) >= 10  # 2 epochs of 40 slots in batches of 8
    for shares in result["shares"]:  # 4 slots over 4 classes on each device: one of each
        assert shares == [[1, 1, 1, 1]] * 2, result["shares"]
    assert len(result["losses"]) == 2 and all(np.isfinite(result["losses"]))
    assert not result["tensorflow"]


@pytest.mark.parametrize("devices", [2, 3, 4])
def test_each_device_shard_of_a_generator_batch_is_balanced(image_folder_factory, devices):
    """``keras.distribution.DataParallel`` (JAX) shards a batch along its first axis into
    consecutive blocks, one per device: each block is balanced."""
    root = image_folder_factory(COUNTS, size=(8, 8))
    generator = genaug.BalancedBatchGenerator(root, balance="balanced_batches", batch_size=24,
                                              epoch_size=96, image_size=(8, 8), seed=1)
    for epoch in range(2):
        for index in range(len(generator)):
            labels = np.asarray(generator[index][1])
            assert np.bincount(labels, minlength=4).tolist() == [6, 6, 6, 6]
            for shard in np.array_split(labels, devices):
                assert np.ptp(np.bincount(shard, minlength=4)) <= 1, (epoch, index, labels)
        generator.on_epoch_end()
