"""The tests' shared harness: one `wait_for`, one `free_port`, the real server (`Server`, `running_server`,
`shared_server`) and the real alert receivers. Fixtures that use them are in tests/conftest.py."""
