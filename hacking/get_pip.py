"""Stand-in for the pip bootstrap script (get-pip.py) that ansible-test downloads from a
host outside the package registries: installs the pip that Python's ensurepip carries,
then the exact packages ansible-test asks for, from PyPI. hacking/bootstrap.sh puts it
where ansible-test looks for its cached copy."""
import ensurepip
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# get-pip.py options that pip itself does not know.
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'pip', 'install', '-q'] + args)
