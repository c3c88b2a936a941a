"""The `keras-local` command (also `python -m keras_local`)."""

import argparse
import os
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="keras-local", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("benchmark", help="compare learning rules with backprop")
    bench.add_argument("--dataset", default="mnist", help="mnist | digits | cifar10 (default: mnist)")
    bench.add_argument("--rules", default="backprop,forward_forward",
                       help="comma-separated rule names (default: backprop,forward_forward)")
    bench.add_argument("--epochs", type=int, default=2)
    bench.add_argument("--batch-size", type=int, default=100)
    bench.add_argument("--hidden", default="500,500", help="hidden widths (default: 500,500)")
    bench.add_argument("--learning-rate", type=float, default=1e-3)
    bench.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                       help="learning rate of every rule: constant, or cosine decay to 0 "
                       "over the run (default: constant)")
    bench.add_argument("--max-train", type=int, default=None, help="use only this many training samples")
    bench.add_argument("--memory-batch-size", type=int, default=None,
                       help="batch size of the memory probe (default: --batch-size)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--backend", choices=["jax", "tensorflow", "torch"], default=None,
                       help="Keras backend (default: $KERAS_BACKEND)")
    bench.add_argument("--output-dir", default="benchmarks/out")
    bench.add_argument("--list-rules", action="store_true", help="list the known rules and exit")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.backend and os.environ.get("KERAS_BACKEND") != args.backend:
        # The backend is fixed when keras is imported: start again with it.
        env = dict(os.environ, KERAS_BACKEND=args.backend)
        os.execvpe(sys.executable, [sys.executable, "-m", "keras_local", *argv], env)
    from keras_local.benchmark.registry import available_rules
    from keras_local.benchmark.runner import run_benchmark

    if args.list_rules:
        print("\n".join(sorted(available_rules())))
        return 0
    hidden = tuple(int(u) for u in args.hidden.split(",") if u)
    run_benchmark(
        dataset=args.dataset,
        rules=[r.strip() for r in args.rules.split(",") if r.strip()],
        epochs=args.epochs,
        batch_size=args.batch_size,
        hidden_units=hidden,
        learning_rate=args.learning_rate,
        schedule=args.schedule,
        max_train=args.max_train,
        memory_batch_size=args.memory_batch_size,
        seed=args.seed,
        output_dir=args.output_dir,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
