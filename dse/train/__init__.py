"""Training of exit branches: exit losses (:mod:`dse.train.losses`), the proxy trainer that trains
branches on cached backbone features during a search, and full training of a chosen
configuration.
"""
