"""The test suite, laid out like the package: the tests of ``bdps_agents/X`` are in ``tests/X``.

A package (an ``__init__.py`` in each folder), so that helper modules beside the tests import by
their full name (``tests.adapters.smac_standin``) and test modules of the same name may live in two
folders; shared data and helpers are fixtures of ``conftest.py``, never imported from it.
"""
