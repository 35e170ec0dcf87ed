"""Sites: groups of replicas on fast links that synchronise over slow links every H steps.

Pure building blocks (no processes, no sockets), composed by the runtime later:

- `config.py`: the settings of a sites run, validated into one clear line each;
- `outer_optimizer.py`: Nesterov SGD on the anchor (the parameters at the last outer step);
- `pseudo_gradient.py`: per-site (anchor - params) averaged by samples processed;
- `compression.py`: blockwise int8 / 4-bit codecs and error feedback, sizes in bytes;
- `outer_step.py`: one outer step as data flows (encode, decode, average, apply);
- `traffic.py`: bytes across the slow link, per-step sync against outer rounds;
- `streams.py`: disjoint sub-streams of the one global sample stream per site;
- `rounds.py`: the record of each outer round (events.jsonl) and its replay.

docs/sites.md explains the design.
"""
