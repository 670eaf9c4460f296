"""One exception type for every problem with the user's input.

Scripts catch it at the top level and print its message as a single line, so a user sees
which case or file is wrong and why, never a traceback.
"""


class InputError(Exception):
    """Bad or missing input data, options or weights; the message names the culprit."""
