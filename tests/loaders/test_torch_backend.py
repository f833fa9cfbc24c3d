"""The core loader must not import TensorFlow and must work under KERAS_BACKEND=torch."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import keras
    import numpy as np
    from genaug import BalancedBatchGenerator, RampSchedule
    from genaug.cache import CacheWriter

    data, cache = sys.argv[1], sys.argv[2]
    with CacheWriter(cache) as writer:
        for i in range(6):
            writer.add(np.full((16, 16, 3), 255, np.uint8), class_name="dog", record_id=str(i))
    schedule = RampSchedule(epochs=2)
    loader = BalancedBatchGenerator(data, batch_size=6, image_size=(16, 16), seed=0,
                                    synthetic_cache=cache, schedule=schedule,
                                    augment=keras.layers.RandomFlip("horizontal"))
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(loader, epochs=2, verbose=0, callbacks=[schedule.callback(loader)])
    assert keras.backend.backend() == "torch"
    assert "tensorflow" not in sys.modules, "TensorFlow was imported"
    print("OK", loader.draws_served()[1]["dog"]["synthetic"])
""")


def test_pydataset_fit_under_torch_backend_without_tensorflow(small_dataset, tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(small_dataset),
                             str(tmp_path / "cache")], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    status, synthetic = result.stdout.split()[-2:]
    assert status == "OK" and int(synthetic) > 0
