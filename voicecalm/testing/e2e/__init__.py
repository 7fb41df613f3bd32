"""Rasa Pro 3.21 e2e test files, run against an in-process assistant.

`model` is the file format, `loader` turns files into `cases`, `runner` plays them,
`assertions` and `conversation` check each turn, `du` scores the command generator and
`report` prints and writes the results.
"""
