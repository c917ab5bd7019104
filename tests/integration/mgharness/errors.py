"""tests/integration/mgharness/errors.py - exceptions raised by the integration-test harness.

HarnessError is the base class. ServiceStartError carries the tail of the
service's log so a failed start explains itself in the pytest report.
PortInUseError is raised internally when a service could not bind the port
it was given; Service.start() catches it and retries with fresh ports.
"""


class HarnessError(Exception):
    """Base class of every error the harness raises on purpose."""


class ServiceStartError(HarnessError):
    """A service did not become ready; the message includes its log tail."""


class PortInUseError(ServiceStartError):
    """A service failed because its port was taken ("address already in use")."""
