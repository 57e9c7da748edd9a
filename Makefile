# Two commands for a fresh Debian machine: `make demo` and `make test`.
# Each creates or updates the local venv by itself (idempotent, pinned versions).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed
OUT    ?= out

.PHONY: venv ros test demo bench soak clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements-dev.txt
	# exococotools 1.0.0 (the authors' Ex-OKS reference, test-only) needs numpy+cython at build time.
	$(PY) -c "import exococotools" 2>/dev/null || $(PIP) install --no-build-isolation exococotools==1.0.0
	$(PIP) install --no-deps --no-build-isolation -e .
	# setup.cfg sends console scripts to lib/probpose_ros (where ROS 2 looks for executables):
	# link the `probpose` command into the venv's bin/ as well.
	test -x $(VENV)/bin/probpose || ln -sf ../lib/probpose_ros/probpose $(VENV)/bin/probpose
	touch $@

# ROS 2 Kilted wheels (requirements-ros.txt) in the same venv, then colcon builds probpose_msgs,
# hri_msgs (the REP-155 fallback, only where none is installed) and probpose_ros into install/
# (--symlink-install: Python sources are used in place, never a stale copy). Stamps keep a
# second `make ros` / `make test` from reinstalling or rebuilding.
ROS_STAMP   := $(VENV)/.ros-installed
ROS_BUILT   := install/.built
ROS_SOURCES := tools/ros_build.sh tools/ros_underlay.sh tools/fix_ros_cmake.py \
	probpose_msgs/package.xml probpose_msgs/CMakeLists.txt $(wildcard probpose_msgs/msg/*.msg) \
	hri_msgs/package.xml hri_msgs/CMakeLists.txt $(wildcard hri_msgs/msg/*.msg) \
	package.xml setup.py setup.cfg $(wildcard launch/* config/*.yaml config/*.rviz config/*.xml)

ros: $(ROS_BUILT)

$(ROS_STAMP): requirements-ros.txt $(STAMP)
	$(PIP) install -r requirements-ros.txt
	touch $@

$(ROS_BUILT): $(ROS_STAMP) $(ROS_SOURCES)
	tools/ros_build.sh $(VENV)
	touch $@

# install/setup.sh puts the built messages on PYTHONPATH / LD_LIBRARY_PATH / AMENT_PREFIX_PATH.
test: venv ros
	. install/setup.sh && $(PY) -m pytest -q test

demo: venv
	$(VENV)/bin/probpose demo --out $(OUT)/demo

bench: venv ros
	$(VENV)/bin/probpose bench
	$(VENV)/bin/probpose bench --data
	. install/setup.sh && $(PY) -m probpose_ros.bench_node
	. install/setup.sh && $(PY) -m probpose_ros.bench_delivery

# The pose node under 10 000 frames of demo/people.mp4 at twice its throughput, 5 % bad frames of
# every kind, two lifecycle round trips (probpose_ros/soak.py; ~20-30 min on 2 cores). FRAMES=300 for a short run.
FRAMES ?= 10000
soak: venv ros
	. install/setup.sh && $(PY) -m probpose_ros.soak --frames $(FRAMES)

clean:
	rm -rf $(VENV) $(OUT) *.egg-info build install log
