"""The worker edge: signoff's runs driven from a Postgres job queue (Procrastinate).

`worker.app.create_app` builds the Procrastinate app and declares its tasks (worker.tasks):
drive a queued run, the periodic sweep that puts back work whose driver died, the periodic
retention purge. `worker.queue` enqueues runs and keeps the queue's schema; `worker.run`
starts a worker. Like cli/ and service/, it calls the library and nothing in the library
imports it; the run's lease (checkpoints.runs) stays what keeps two drivers off one run.
"""
