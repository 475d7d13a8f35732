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
    # Ranges, not pins: robots run Humble (Ubuntu 22.04: Python 3.10, numpy 1.21.5) and Jazzy (24.04: Python 3.12,
    # numpy 1.26.4) with their own numpy and torch. Every range resolves with the distro's own numpy kept
    # (test/test_install_requirements.py); install next to ROS with a constraint on the system numpy (README).
    install_requires=[
        "numpy>=1.21",
        "torch>=2.1",
        "torchvision>=0.16",
        "PyYAML>=5.4",
        "safetensors>=0.4",
        "Pillow>=9.0",
        "tqdm>=4.60",
        "rosbags>=0.10",
        "opencv-python-headless>=4.5",  # undistortion / rectification (4.11 is the newest without numpy 2)
        "scipy>=1.8",  # linear_sum_assignment for tracking (Humble's numpy 1.21.5 keeps it at 1.10)
    ],
    extras_require={
        "onnx": ["onnxruntime>=1.12", "onnx>=1.14"],  # Humble's numpy 1.21.5 allows onnxruntime 1.12.1 only
        "eval": ["motmetrics>=1.4"],
        "train": ["tensorboard>=2.10"],
        "test": ["pytest>=7.3", "hypothesis>=6.70", "ruff>=0.5", "tensorboard>=2.10", "motmetrics>=1.4",
                 "uv>=0.4",  # uv resolves the requirements for Humble's and Jazzy's Python in the install check
                 "onnxruntime>=1.12", "onnx>=1.14"],  # the ONNX export test (test/test_onnx_export.py)
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "panopticdepth = panopticdepth_ros.cli:main",
            "panopticdepth_node = panopticdepth_ros.node:main",
        ],
    },
)
