"""The pure core: release model, state machine, plans, analysis judgement, grammars and ports. No
I/O."""
