# Every target sets up what it needs; nothing is installed by hand.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test proto proto-check lint bench bench-smoke chaos clean cluster-test bench-scale oip-venv bench-oip bench-telemetry bench-swap bench-batching bench-tracking

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The official Open Inference Protocol clients pin protobuf < 7, so they get a
# virtualenv of their own; the suite drives a replica with them from there.
OIP_VENV := .venv-oip
OIP_STAMP := $(OIP_VENV)/.installed

$(OIP_STAMP):
	$(PYTHON) -m venv $(OIP_VENV)
	$(OIP_VENV)/bin/pip install -q --upgrade pip
	$(OIP_VENV)/bin/pip install -q 'tritonclient[grpc]==2.73.0' 'kserve==0.21.0'
	touch $(OIP_STAMP)

## make oip-venv: the official Triton and KServe clients in .venv-oip, for the acceptance tests.
oip-venv: $(OIP_STAMP)

## make run: set up, start the whole platform on embedded defaults, run the demo against it.
run: $(STAMP)
	$(BIN)/modelplane up --demo

## make test: set up and run lint, type checks, the import rule and the test suite.
test: $(STAMP) lint oip-venv
	$(BIN)/pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check src tests loadtests
	$(BIN)/mypy
	$(BIN)/lint-imports

## make proto: regenerate the checked-in code from protos/ with the pinned generators.
proto: $(STAMP)
	$(BIN)/python protos/generate.py src

## make bench: every figure of BENCHMARKS.md in one run (~10 min): modelplane, the bare
## grpc.aio server, Ray Serve's stock proxy and in-process onnxruntime side by side.
## make bench-tracking: what logging 100,000 metric points adds to a training loop.
bench-tracking: $(STAMP)
	$(BIN)/python -m loadtests.tracking_overhead --points 100000 --repeats 3

bench: $(STAMP)
	$(BIN)/python -m loadtests.bench

## make chaos: the fault tests stretched (Redis, control plane and replica kills, 20 s
## phases), fuzzing with 2,000 examples per message, then a Ray Serve replica killed every
## 10 s for 5 minutes under load; prints the success figures.
chaos: $(STAMP)
	MODELPLANE_CHAOS_SECONDS=20 MODELPLANE_FUZZ_EXAMPLES=2000 $(BIN)/pytest -q -s -p no:cacheprovider --timeout 3600 \
		tests/integration/test_chaos.py tests/fuzz
	$(BIN)/python -m loadtests.chaos_replicas --seconds 300 --interval 10

## make bench-smoke: the same harness for seconds (floor, bare, control-plane figures).
bench-smoke: $(STAMP)
	$(BIN)/python -m loadtests.bench --smoke --no-plots

## make bench-telemetry: one replica with telemetry at default settings vs one without, same run.
bench-telemetry: $(STAMP)
	$(BIN)/python -m loadtests.telemetry_overhead --seconds 10 --rounds 5

## make bench-swap: 20 hot swaps and a 10-step weighted rollout at 50 % of capacity (~1 min).
bench-swap: $(STAMP)
	$(BIN)/python -m loadtests.swap_test

## make bench-batching: the heavy MLP batched vs unbatched, at 64 and at 1 in flight (~2 min).
bench-batching: $(STAMP)
	$(BIN)/python -m loadtests.batch_bench --seconds 5 --rounds 2

## make bench-oip: Open Inference Protocol ModelInfer through modelplane vs a bare grpc.aio server.
bench-oip: $(STAMP)
	$(BIN)/python loadtests/oip_vs_bare.py --seconds 10 --rounds 3

## make cluster-test: the data plane on a 2-node Ray cluster the test starts itself (head +
## `ray start --address` node). Not in `make test`: two raylets, a GCS, a Serve controller
## and two replicas take 1-2 minutes on a 2-core machine.
cluster-test: $(STAMP)
	MODELPLANE_CLUSTER_TEST=1 $(BIN)/pytest -q -p no:cacheprovider -m cluster tests/cluster

## make bench-scale: 1,000 endpoints, 10,000 versions, fan-out to 200 subscribers (~10 min).
bench-scale: $(STAMP)
	$(BIN)/python -m loadtests.scale_sim

clean:
	rm -rf $(VENV) $(OIP_VENV) build *.egg-info
