"""The test kit: everything the tests and the benchmarks need around slipway, in one place.

- `repo`: the repository root, Git helpers, a committed snapshot of the working tree;
- `net`: free loopback ports;
- `services`: service containers started with testcontainers (a registry, open or with htpasswd; PostgreSQL;
  a Prefect server on SQLite or on PostgreSQL), each with a wait strategy, labelled, and cleaned up;
- `fakes`: an in-memory registry and Prefect for the fast unit tests of planning logic (no Docker).

slipway/ holds none of this: the kit uses slipway's own code only where a test checks it or where slipway
already knows how (building the locally-built service images).
"""
