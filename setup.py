"""Install as a pip package (`pip install -e .`) or as an ament_python ROS 2 package (`colcon build`)."""

from glob import glob

from setuptools import find_packages, setup

package_name = "panopticdepth_ros"

setup(
    name=package_name,
    version="0.1.0",
    description="PanopticDepth: depth-aware panoptic segmentation in pure PyTorch, with a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    # training/ holds scripts (train.py, data preparation, weight export), not a package: nothing named
    # `training` lands in site-packages.
    packages=find_packages(include=["panopticdepth_core", "panopticdepth_core.*", "panopticdepth_ros",
                                    "panopticdepth_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/config/cityscapes", glob("config/cityscapes/*.yaml")),
        ("share/" + package_name + "/config/cityscapes_dps", glob("config/cityscapes_dps/*.yaml")),
        ("share/" + package_name + "/config/synthetic", glob("config/synthetic/*.yaml")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
        ("share/" + package_name + "/models", glob("models/*.safetensors") + glob("models/*.yaml")),
    ],
    # Ranges, not pins: robots run Humble (Python 3.10) and Jazzy (3.12) with their own torch builds.
    install_requires=[
        "numpy>=1.22",
        "torch>=2.1",
        "torchvision>=0.16",
        "PyYAML>=5.4",
        "safetensors>=0.4",
        "Pillow>=9.0",
        "tqdm>=4.60",
        "rosbags>=0.10",
    ],
    extras_require={
        "train": ["tensorboard>=2.10"],
        "test": ["pytest>=7", "hypothesis>=6.70", "ruff>=0.5", "tensorboard>=2.10"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "panopticdepth = panopticdepth_ros.cli:main",
            "panopticdepth_node = panopticdepth_ros.node:main",
        ],
    },
)
