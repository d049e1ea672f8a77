"""``python -m initlab`` is the ``initlab`` command (`initlab.console.main`)."""

from initlab.console import main

main()
