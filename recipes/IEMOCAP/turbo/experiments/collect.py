#!/usr/bin/env python3
"""Gathers the results.csv of every configuration under a sweep folder into
one Markdown table (speechbrain_turbo.cross_validate.collect).

Usage: python experiments/collect.py results/demo_sweep

Authors
 * speechbrain-turbo contributors
"""

import sys

from speechbrain_turbo.cross_validate import collect

if __name__ == "__main__":
    print(collect(sys.argv[1]))
