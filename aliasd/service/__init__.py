"""The assembly on top: the authority that ties the stages together, the
twistd plugin's makeService, reload, and the aliasd-check tool.
"""
