"""The base of every problem a user can fix (a bad flag, file, symbol or ledger): the
command line prints its message on one line and exits 2, without a traceback."""


class UserError(Exception):
    """A problem the user can fix; its message names the input and what is wrong."""
