"""What the Linux and Debian guest test scripts share around their scenarios: the two
outcomes a scenario raises besides success, and the runner that gives each a private
temporary directory and turns the outcome into the CTest exit status. Stdlib only."""
import tempfile

SKIP = 77  # CTest SKIP_RETURN_CODE


class Failure(Exception):
    """The behaviour under test is wrong: exit 1 with the message."""


class Skip(Exception):
    """A prerequisite is missing (images not built, QEMU or tandem absent): exit 77."""


def run(prefix, scenario):
    """Calls scenario(tmp) with a fresh temporary directory (removed afterwards, whatever
    happens); returns 0, 1 after printing FAIL: ..., or SKIP after printing SKIP: ..."""
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            scenario(tmp)
    except Skip as e:
        print(f"SKIP: {e}")
        return SKIP
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    return 0
