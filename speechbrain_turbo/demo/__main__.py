"""``python -m speechbrain_turbo.demo --output DIR``: writes the demo corpus.

Authors
 * speechbrain-turbo contributors
"""

from speechbrain_turbo.demo.corpus import main

if __name__ == "__main__":
    main()
