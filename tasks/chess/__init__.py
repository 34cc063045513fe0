"""Chess mate-in-N, in one folder.

- text.py      the text format (prompt, completion, vocabulary) and what an example holds
- search.py    the exact mate search with python-chess: the one judge of chess truth
- generate.py  puzzles from the games of a noisy greedy policy
- stream.py    a seed's puzzle stream: chunks of games, cached, computed on a process pool
- lichess.py   real puzzles: reading and checking the Lichess puzzle CSV
- task.py      the task: splits, the verifier and the stubborn defender the harness plays
- data/        the shipped Lichess sample
"""

from tasks.chess.task import ChessMateTask

__all__ = ["ChessMateTask"]
