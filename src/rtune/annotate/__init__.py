"""Blind pairwise judging by people, in the browser (`rtune annotate`).

`pairs` builds the blind pairs and their seeded display order, `store` keeps every judgment in
SQLite the moment it is made, `server` serves the judging page, `export` writes AlpacaEval
annotations (and the human win rate), `agreement` compares people with each other and with any
judge's annotations file. Modules are imported where used: the web stack loads only to serve.
"""
