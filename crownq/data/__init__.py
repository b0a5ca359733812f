"""Data layer: shard format, token loaders, tokenizer byte tables + bpb, embedded corpus, download.

Import the submodules directly (`from crownq.data.loader import DistributedTokenLoader`); this
package file stays empty so importing one piece does not pull in sentencepiece or huggingface_hub.
"""
