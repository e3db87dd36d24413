# distrainer — the two commands a fresh machine needs:
#   make demo   install what is missing, build release, import Fashion-MNIST, train refcnn on 2 MPI ranks
#   make test   install what is missing, build, run the whole test suite (swift test)
SHELL := /bin/bash

# Debian packages the build, tests and runtime need (docker/ reads the same list).
APT_PACKAGES := $(shell cat packages/apt-build.txt)
DEMO_PACKAGES := dataset-fashion-mnist

# Root is allowed to run mpirun; one OpenBLAS thread per rank unless told otherwise.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OPENBLAS_NUM_THREADS ?= 1
export OMP_NUM_THREADS ?= 1

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RANKS ?= 2
EPOCHS ?= 3
DATA ?= data/fashion-mnist
RUN ?= runs/demo

.PHONY: deps demo-deps test-deps build release test demo bench clean

# Installs only the packages that are missing (apt-get update once, then install).
deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "dependencies present"; fi

demo-deps: deps
	@dpkg -s $(DEMO_PACKAGES) >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $(DEMO_PACKAGES); }

build: deps
	swift build

release: deps
	swift build -c release

# Tests run against an optimised build (end-to-end runs train real models); -enable-testing keeps
# @testable imports working in release.
TEST_FLAGS := -c release -Xswiftc -enable-testing
# The HTTP fault server of the streaming tests is a Python 3 script (standard library only);
# the resnet18 reference (Tests/Fixtures/resnet_reference.py) needs NumPy.
test-deps: demo-deps
	@command -v python3 >/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3; }
	@python3 -c 'import numpy' 2>/dev/null || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends python3-numpy; }

test: deps test-deps
	swift build $(TEST_FLAGS) --build-tests
	swift test $(TEST_FLAGS) --skip-build

# Fashion-MNIST (Debian's dataset-fashion-mnist) → PNG + JSONL, then refcnn on $(RANKS) ranks.
demo: demo-deps release
	@bin=$$(swift build -c release --show-bin-path)/distrainer; src=/usr/share/datasets/fashion-mnist; \
	if [ ! -f $(DATA)/train.jsonl ]; then \
	  $$bin import-idx --images $$src/train-images-idx3-ubyte.gz --labels $$src/train-labels-idx1-ubyte.gz \
	    --classes fashion-mnist --out $(DATA) --name train && \
	  $$bin import-idx --images $$src/t10k-images-idx3-ubyte.gz --labels $$src/t10k-labels-idx1-ubyte.gz \
	    --classes fashion-mnist --out $(DATA) --name test; fi && \
	mpirun -n $(RANKS) --oversubscribe -x OPENBLAS_NUM_THREADS -x OMP_NUM_THREADS $$bin train \
	  --train $(DATA)/train.jsonl --val $(DATA)/test.jsonl --model refcnn --image-size 28 --channels 1 \
	  --mean 0.286 --std 0.353 --epochs $(EPOCHS) --batch-size 128 --lr 0.05 --lr-schedule cosine \
	  --weight-decay 5e-4 --seed 1 --out $(RUN) --quiet && \
	echo "(val_acc above is the accuracy on the 10,000 Fashion-MNIST test images; history: $(RUN)/history.jsonl)"

bench: release
	$$(swift build -c release --show-bin-path)/distrainer bench --model refcnn --image-size 32 --channels 3 --batch-size 64 --threads 1

clean:
	rm -rf .build data runs
