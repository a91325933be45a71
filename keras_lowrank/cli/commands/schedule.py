"""`keras-lowrank schedule`: print and plot CLR versus CALR for given arguments."""

NAME = "schedule"
HELP = "Show the cyclical (CLR) and cyclically annealed (CALR) learning rates; --plot draws them."


def add_arguments(parser):
    parser.add_argument("--initial", type=float, default=1e-4, help="Floor learning rate (default 1e-4).")
    parser.add_argument("--maximal", type=float, default=3e-3, help="First peak (default 3e-3).")
    parser.add_argument("--step-size", type=int, default=100, help="Steps per half cycle (default 100).")
    parser.add_argument("--decay", type=float, default=0.5, help="CALR peak decay per cycle (default 0.5).")
    parser.add_argument("--restart-every", type=int, default=None, help="CALR: restart the annealing every N cycles.")
    parser.add_argument("--steps", type=int, default=None, help="Steps to show (default: 4 cycles).")
    parser.add_argument("--plot", metavar="PNG", help="Draw both curves to this PNG file.")
    parser.add_argument("--overwrite", action="store_true", help="Replace the --plot file if it exists.")


def run(args):
    import numpy as np

    from keras_lowrank.cli.commands.inspect import PLOT_SUFFIXES
    from keras_lowrank.cli.model_io import check_output_path, writing
    from keras_lowrank.schedules import CyclicallyAnnealedLearningRate, CyclicalLearningRate

    if args.plot:
        check_output_path(args.plot, PLOT_SUFFIXES, overwrite=args.overwrite, option="--plot")
    clr = CyclicalLearningRate(args.initial, args.maximal, args.step_size)
    calr = CyclicallyAnnealedLearningRate(
        args.initial, args.maximal, args.step_size, decay=args.decay, restart_every=args.restart_every
    )
    steps = args.steps or 8 * args.step_size
    if steps <= 0:
        raise ValueError(f"Expected `--steps` to be positive, received: {steps}")
    shown = np.unique(np.linspace(0, steps, 9).astype(int))
    print(f"{'step':>8} {'CLR':>12} {'CALR':>12}")
    for step in shown:
        print(f"{step:>8} {float(clr(step)):>12.6g} {float(calr(step)):>12.6g}")
    if args.plot:
        from keras_lowrank.schedules import plot_schedules

        with writing(args.plot, "--plot"):
            plot_schedules({"CLR": clr, "CALR": calr}, steps, args.plot)
        print(f"wrote {args.plot}")
    return 0
