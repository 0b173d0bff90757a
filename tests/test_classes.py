"""jaxvis.classes: the ImageNet table against known anchors, lookups, and decode against a Python sort."""

import re

import numpy as np
import pytest

import jaxvis
from jaxvis import classes
from jaxvis.classes import IMAGENET, ClassNames

# (index, display name, WordNet id), as torchvision's weights.meta["categories"] and the
# ILSVRC2012 devkit list them.
ANCHORS = [(0, "tench", "n01440764"), (1, "goldfish", "n01443537"), (9, "ostrich", "n01518878"),
           (130, "flamingo", "n02007558"), (207, "golden retriever", "n02099601"), (281, "tabby", "n02123045"),
           (999, "toilet tissue", "n15075141")]


@pytest.mark.parametrize("index, name, wnid", ANCHORS)
def test_imagenet_anchor_classes(index, name, wnid):
    assert (IMAGENET.name(index), IMAGENET.ids[index]) == (name, wnid)
    assert IMAGENET.index(name) == IMAGENET.index(wnid) == index


def test_imagenet_order_is_sorted_wordnet_ids_with_unique_names():
    # torchvision's ImageFolder and Keras order the 1000 classes by sorted WordNet id.
    assert len(IMAGENET) == len(set(IMAGENET.ids)) == len(set(IMAGENET.names)) == 1000
    assert list(IMAGENET.ids) == sorted(IMAGENET.ids)
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in IMAGENET.ids)
    # torchvision's two disambiguated names; the WordNet lemmas stay synonyms.
    assert (IMAGENET.name(134), IMAGENET.name(517), IMAGENET.name(638), IMAGENET.name(639)) == (
        "crane bird", "crane", "maillot", "maillot tank suit")
    assert IMAGENET.synonyms[134] == ("crane bird", "crane")


@pytest.mark.parametrize("spec", [130, np.int64(130), "130", " 130 ", "flamingo", "FLAMINGO", "N02007558"])
def test_index_accepts_ints_strings_names_and_ids(spec):
    assert IMAGENET.index(spec) == 130


def test_index_finds_synonyms_and_settles_case_by_spelling():
    assert IMAGENET.index("tabby cat") == 281
    assert IMAGENET.index("toilet paper") == 999
    assert IMAGENET.index("Golden Retriever") == 207
    # "Cardigan" the corgi and "cardigan" the sweater differ only in case.
    assert (IMAGENET.index("Cardigan"), IMAGENET.index("cardigan")) == (264, 474)
    assert (IMAGENET.name(264), IMAGENET.name(474)) == ("Cardigan", "cardigan")


def test_index_refuses_unknown_with_suggestion():
    with pytest.raises(ValueError, match="unknown class 'flamingoo'.*Did you mean 'flamingo'"):
        IMAGENET.index("flamingoo")


def test_index_refuses_a_synonym_of_two_classes_naming_both():
    with pytest.raises(ValueError, match=r"'panda' is ambiguous.*387 \(lesser panda.*388 \(giant panda"):
        IMAGENET.index("panda")


@pytest.mark.parametrize("spec", [1000, -1, "1000", True, 2.0, None])
def test_index_refuses_out_of_range_and_other_types(spec):
    with pytest.raises(ValueError):
        IMAGENET.index(spec)


def python_top_k(row, k):
    """The oracle: a plain Python sort by descending probability, lower index first on ties."""
    order = sorted(range(len(row)), key=lambda i: (-float(row[i]), i))
    return [(i, IMAGENET.names[i], float(row[i])) for i in order[:k]]


def test_decode_batch_equals_python_sort(rng):
    probs_NK = rng.dirichlet(np.ones(1000), size=3).astype(np.float32)
    probs_NK[1, [5, 7, 900]] = 0.5  # a three-way tie: lower index first
    assert IMAGENET.decode(probs_NK, k=4) == [python_top_k(row, 4) for row in probs_NK]
    assert [i for i, _, _ in IMAGENET.decode(probs_NK[1], k=3)] == [5, 7, 900]


def test_decode_single_image_returns_one_list(rng):
    probs_K = rng.dirichlet(np.ones(1000))
    probs_K[130] = 2.0
    probs_K /= probs_K.sum()
    top = IMAGENET.decode(probs_K, k=1)
    assert top == [(130, "flamingo", float(probs_K[130]))]


@pytest.mark.parametrize("probs, k, message", [
    (np.full(10, 0.1), 5, r"shape \(1000,\) or \(N, 1000\)"),
    (np.full((2, 3, 1000), 1e-3), 5, r"shape \(1000,\)"),
    (np.linspace(-3, 3, 1000), 5, r"in \[0, 1\].*softmax"),
    (np.full(1000, np.nan), 5, "finite"),
    (np.full(1000, 1e-3), 0, "k must be"),
    (np.full(1000, 1e-3), 1001, "at most the number of classes, 1000"),
])
def test_decode_refuses_bad_input(probs, k, message):
    with pytest.raises(ValueError, match=message):
        IMAGENET.decode(probs, k=k)


def test_small_datasets_have_their_standard_names():
    assert classes.MNIST.names == tuple("0123456789")
    assert classes.FASHION_MNIST.names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                           "Shirt", "Sneaker", "Bag", "Ankle boot")
    assert classes.FASHION_MNIST.index("sneaker") == 7 and classes.MNIST.index("3") == 3


def test_for_model_picks_names_by_output_count_and_dataset():
    assert classes.for_model(jaxvis.build("vgg16", input_size=32)) is IMAGENET
    assert classes.for_model(jaxvis.build("mnist_cnn"), "fashion_mnist") is classes.FASHION_MNIST
    assert classes.for_model(10, "mnist") is classes.MNIST
    assert classes.for_model(3).names == ("class 0", "class 1", "class 2")


def test_for_model_refuses_a_dataset_of_another_size_and_unknown_names():
    with pytest.raises(ValueError, match="'cifar10' has 10 classes but the network has 1000 outputs"):
        classes.for_model(1000, "cifar10")
    with pytest.raises(ValueError, match="Did you mean 'fashion_mnist'"):
        classes.for_model(10, "fashion-mnist")
    with pytest.raises(ValueError, match="number of classes"):
        classes.for_model(0)


def test_class_names_refuse_repeated_names_and_mismatched_ids():
    with pytest.raises(ValueError, match=r"unique, got \['a'\]"):
        ClassNames(("a", "b", "a"), None, "test")
    with pytest.raises(ValueError, match="one entry of ids per name"):
        ClassNames(("a", "b"), ("n00000001",), "test")
