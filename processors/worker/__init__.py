"""The stream worker (`plantstream process`), in named parts (docs/worker.md describes them):

- state.py          the typed per-asset state and the changelog-backed tables it lives in
- stage.py          the Stage interface every piece of math is behind
- stages/           KPI windows, OEE, anomaly scores, alert rules
- processor.py      the per-frame path: decode, contract, state, stages, outputs, dead letters
- outputs.py        the Outputs interface and an in-memory collector (unit tests without Kafka)
- kafka_outputs.py  outputs and changelog writes through librdkafka, each tracked until confirmed
- checkpoint.py     the commit order: outputs confirmed -> state written -> input offsets committed
- timers.py         silence (idle windows, stale alerts) and input offset bookkeeping
- faust_compat.py   the only module touching private Faust / mode / aiokafka names
- app.py            the Faust glue: topics, tables, agent, timers
"""
