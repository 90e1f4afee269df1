"""pip install -e .  (the library and CLI; the ROS 2 build uses package.xml + CMakeLists.txt)."""

from pathlib import Path

from setuptools import find_packages, setup

# The one place where dependency versions are pinned. torch/torchvision are PyPI's builds
# (CUDA-enabled, they also run on CPU); torchvision's wheels do not load with a CPU-only torch.
REQUIREMENTS = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "gsplat==1.5.3",
    "open_clip_torch==3.3.0",
    "segment-anything==1.0",
    "sam2==1.1.0",
    "opencv-python-headless==4.14.0.94",
    "transforms3d==0.4.2",
    "numpy==2.3.5",
    "numba==0.68.1",
    "scipy==1.16.3",
    "rosbags==0.11.9",
    "PyYAML==6.0.3",
]
TEST_REQUIREMENTS = ["pytest==9.2.0"]

setup(
    name="langgs_ros",
    version="0.1.0",
    description="Semantic 3D Gaussian maps from RGB-D streams, queried by text (ROS 2)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["langgs_ros", "langgs_ros.*"]),
    package_data={"langgs_ros.semantics": ["model_configs/*.json"]},
    install_requires=REQUIREMENTS,
    extras_require={"test": TEST_REQUIREMENTS},
    data_files=[  # for colcon (ament_python): package index marker, manifest, launch and config files
        ("share/ament_index/resource_index/packages", ["resource/langgs_ros"]),
        ("share/langgs_ros", ["package.xml"]),
        ("share/langgs_ros/config", [str(p) for p in sorted(Path("config").glob("*.yaml"))]),
        ("share/langgs_ros/launch", [str(p) for p in sorted(Path("launch").glob("*.launch.py"))]),
        ("share/langgs_ros/msg", [str(p) for p in sorted(Path("msg").glob("*.msg"))]),
        ("share/langgs_ros/srv", [str(p) for p in sorted(Path("srv").glob("*.srv"))]),
    ],
    entry_points={"console_scripts": ["langgs = langgs_ros.cli:entrypoint"]},
)
