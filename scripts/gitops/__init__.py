"""The env-repo engine behind the step scripts and the operator commands.

`scripts/<step>.py` are thin entry points: each parses its arguments with the shared options of
`gitops.cli`, calls one function of this package and prints the result. Everything else lives
here, typed, and is called directly by the scripts, by other commands (deploy calls
`gitops.promote.promote`) and by the tests, never through an argument list.

Design decisions:
- One git layer (`gitops.envrepo`): every git call goes through it. Trees and commits are made by
  git's own plumbing (`hash-object`, `mktree`, `commit-tree`), so git, not this code, decides
  the format and the order of tree entries.
- Errors are read from machine-readable output only (exit codes, `push --porcelain` status
  flags), and git runs with `LC_ALL=C`.
- Commits are signed and signatures checked by git itself (`gitops.signing` hands it the SSH
  key and the allowed signers from the environment); no other module knows about keys.
- Two error kinds: `BadInput` (exit 2: the caller must fix something; nothing changed) and
  `OperationFailed` (exit 1: the input was fine but the operation could not complete; nothing
  changed).
- Inputs are hostile until checked: every value is checked by full match before anything runs
  (`gitops.checks`, numeric settings in `gitops.settings`, manifests folders in
  `gitops.manifests`); child processes get a deadline and only the environment they need
  (`gitops.processes`); scratch folders left by killed runs are swept (`gitops.scratch`).
"""
