"""session-buddy: lifecycle tracking for interactive shells and agents."""

__version__ = "0.1.0"
