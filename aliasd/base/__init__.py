"""The foundation every stage builds on: configuration, the packed record
store, counters, the log throttle, state-directory files, access rules.
Nothing here imports from another aliasd package.
"""
