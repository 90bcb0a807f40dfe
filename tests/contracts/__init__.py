"""Contract suites: one per driver kind, run against the fake driver (tests/unit/drivers) and every
real one (tests/integration/drivers). A test module runs a suite by importing its tests and
providing the suite's fixture."""
