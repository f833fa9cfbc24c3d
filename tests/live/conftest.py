import pytest


@pytest.fixture(scope="package")
def live_data(tmp_path_factory, image_folder_writer):
    """A small long-tailed folder and a tiny DDPM generator fitted on it for two steps."""
    from genaug.generation import fit_generator

    root = tmp_path_factory.mktemp("live")
    data = image_folder_writer(root / "data", {"cat": 16, "dog": 4, "snake": 8})
    generator = root / "generator"
    fit_generator(data, out_dir=generator, resolution=16, model_size="tiny", max_steps=2,
                  batch_size=8, progress=False)
    return data, generator
