# Convenience targets; each calls the script the README names.
.PHONY: demo test bench proto
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
proto:
	.venv/bin/python scripts/gen_proto.py
bench:
	bash scripts/setup.sh && .venv/bin/python -m bench.round_bench
