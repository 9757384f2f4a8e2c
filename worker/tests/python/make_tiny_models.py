"""Builds tiny random BERT and XLM-R models with Hugging Face `transformers`, wraps them as
sentence-transformers directories (LaBSE-like: CLS + tanh Dense + Normalize; e5-like: mean +
Normalize), and writes the reference outputs Rosetta's encoders must reproduce.

usage: make_tiny_models.py OUT_DIR
"""

import json
import os
import sys

import torch
from sentence_transformers import SentenceTransformer, models
from tokenizers import Tokenizer, decoders, models as tok_models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, XLMRobertaConfig, XLMRobertaModel

MAX_SEQ_LENGTH = 24
CORPUS = [
    "Ana was born in Oslo in 1987.", "Ana wurde 1987 in Oslo geboren.", "Анна родилась в Осло в 1987 году.",
    "Η Άννα γεννήθηκε στο Όσλο το 1987.", "安娜1987年出生在奥斯陆。", "آنا در سال ۱۹۸۷ در اسلو به دنیا آمد.",
    "Where was Ana born?", "Wo wurde Ana geboren?", "Где родилась Анна?", "The river flows north past the old mill.",
]
TEXTS = [
    "Where was Ana born?",
    "Анна родилась в Осло.",
    "安娜出生在奥斯陆。",
    "A much longer passage that keeps going well past the maximum sequence length of the tiny model, "
    "so that truncation is exercised: the river flows north past the old mill and further still.",
    "x",
]


def wordpiece_tokenizer() -> Tokenizer:
    tok = Tokenizer(tok_models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=300, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.post_processor = processors.BertProcessing(("[SEP]", tok.token_to_id("[SEP]")), ("[CLS]", tok.token_to_id("[CLS]")))
    return tok


def unigram_tokenizer() -> Tokenizer:
    tok = Tokenizer(tok_models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], unk_token="<unk>")
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return tok


def save_hf(kind: str, out: str) -> str:
    torch.manual_seed(0 if kind == "bert" else 1)
    if kind == "bert":
        tok = wordpiece_tokenizer()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                       sep_token="[SEP]", mask_token="[MASK]")
        config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, max_position_embeddings=64, type_vocab_size=2)
        model = BertModel(config, add_pooling_layer=False)
    else:
        tok = unigram_tokenizer()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                       unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
        config = XLMRobertaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=64, max_position_embeddings=66,
                                  type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                  layer_norm_eps=1e-5)
        model = XLMRobertaModel(config, add_pooling_layer=False)
    # Random, non-trivial LayerNorm parameters too (init leaves them at 1 and 0).
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name:
                param.add_(torch.randn_like(param) * 0.1)
    model.eval()
    hf_dir = os.path.join(out, f"{kind}-hf")
    model.save_pretrained(hf_dir, safe_serialization=True)
    fast.save_pretrained(hf_dir)
    return hf_dir


def main() -> None:
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    expected = {"texts": TEXTS, "max_seq_length": MAX_SEQ_LENGTH}
    for kind in ["bert", "xlmr"]:
        hf_dir = save_hf(kind, out)
        transformer = models.Transformer(hf_dir, max_seq_length=MAX_SEQ_LENGTH)
        dim = transformer.get_word_embedding_dimension()
        if kind == "bert":
            torch.manual_seed(2)
            modules = [transformer, models.Pooling(dim, pooling_mode="cls"),
                       models.Dense(dim, 16, activation_function=torch.nn.Tanh()), models.Normalize()]
        else:
            modules = [transformer, models.Pooling(dim, pooling_mode="mean"), models.Normalize()]
        st = SentenceTransformer(modules=modules, device="cpu")
        st_dir = os.path.join(out, f"{kind}-st")
        st.save(st_dir)
        st = SentenceTransformer(st_dir, device="cpu")
        st_embeddings = st.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True)
        # Raw transformer: last hidden states and masked mean pooling, no normalisation.
        features = st.tokenize(TEXTS)
        with torch.no_grad():
            hidden = st[0].auto_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"]).last_hidden_state
        mask = features["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1)
        expected[kind] = {
            "input_ids": features["input_ids"].tolist(),
            "st_embeddings": st_embeddings.tolist(),
            "mean_pooled": mean.tolist(),
            "cls": hidden[:, 0].tolist(),
        }
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f)


if __name__ == "__main__":
    main()
