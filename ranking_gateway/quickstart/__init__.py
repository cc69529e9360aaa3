"""The quickstart collection: built from the installed Python standard library, so any machine has it."""
