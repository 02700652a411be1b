"""Training tasks on one engine: colourization (netdsl.tasks.colourize) and detection
(netdsl.tasks.detect), each one folder; the engine's pieces beside them (engine, checkpoint,
rundir, distributed, ema, report, plots); `train` knows the tasks.

Nothing is imported here: `netdsl --help` imports netdsl.commands.train, which reaches this
package only when training runs (torch)."""
