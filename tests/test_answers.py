"""Answer extraction: hand-worked cases for every subset, and real-format fixtures whose gold output extracts to its answer."""

import pytest

from hira.evaluation.answers import answer_completion, extract_answer, is_correct, offered_labels

# One record per test file, in the exact shape of LLM-Adapters' dataset/<folder>/test.json.
REAL_FORMAT = {
    "boolq": {"instruction": "Please answer the following question with true or false, question: do iran and "
                             "afghanistan speak the same language?\n\nAnswer format: true/false",
              "input": "", "output": "the correct answer is true", "answer": "true"},
    "piqa": {"instruction": "Please choose the correct solution to the question: How do I ready a guinea pig cage "
                            "for it's new occupants?\n\nSolution1: Provide the guinea pig with a cage full of a few "
                            "inches of bedding made of ripped paper strips.\n\nSolution2: Provide the guinea pig with "
                            "a cage full of a few inches of bedding made of ripped jeans material.\n\n"
                            "Answer format: solution1/solution2",
             "input": "", "output": "the correct answer is solution1", "answer": "solution1"},
    "social_i_qa": {"instruction": "Please choose the correct answer to the question: Tracy didn't go home that "
                                   "evening and resisted Riley's attacks. What does Tracy need to do before this?\n\n"
                                   "Answer1: make a new plan Answer2: Go home and see Riley Answer3: Find somewhere "
                                   "to go\n\nAnswer format: answer1/answer2/answer3",
                    "input": "", "output": "the correct answer is answer3", "answer": "answer3"},
    "hellaswag": {"instruction": "Please choose the correct ending to complete the given sentence: Removing ice "
                                 "from car: Then, the man writes over the snow covering the window of a car, and a "
                                 "woman wearing winter clothes smiles. then\n\nEnding1: , the man adds wax to the "
                                 "windshield and cuts it. Ending2: , a person board a ski lift, while two men "
                                 "supporting the head of the person wearing winter clothes snow as the we girls sled. "
                                 "Ending3: , the man puts on a christmas coat, knitted with netting. Ending4: , the "
                                 "man continues removing the snow on his car.\n\n"
                                 "Answer format: ending1/ending2/ending3/ending4",
                  "input": "", "output": "the correct answer is ending4", "answer": "ending4"},
    "winogrande": {"instruction": "Please choose the correct answer to fill in the blank to complete the given "
                                  "sentence: Sarah was a much better surgeon than Maria so _ always got the harder "
                                  "cases.\n\nOption1: Sarah\n\nOption2: Maria\n\nAnswer format: option1/option2",
                   "input": "", "output": "the correct answer is option1", "answer": "option1"},
    "ARC-Easy": {"instruction": "Please choose the correct answer to the question: Which factor will most likely "
                                "cause a person to develop a fever?\n\nAnswer1: a leg muscle relaxing after exercise "
                                "Answer2: a bacterial population in the bloodstream Answer3: several viral particles "
                                "on the skin Answer4: carbohydrates being digested in the stomach\n\n"
                                "Answer format: answer1/answer2/answer3/answer4",
                 "input": "", "output": "the correct answer is answer2", "answer": "answer2"},
    "ARC-Challenge": {"instruction": "Please choose the correct answer to the question: George wants to warm his "
                                     "hands quickly by rubbing them. Which skin surface will produce the most heat?"
                                     "\n\nAnswer1: dry palms Answer2: wet palms Answer3: palms covered with oil "
                                     "Answer4: palms covered with lotion\n\n"
                                     "Answer format: answer1/answer2/answer3/answer4",
                      "input": "", "output": "the correct answer is answer1", "answer": "answer1"},
    "openbookqa": {"instruction": "Please choose the correct answer to the question: The sun is responsible for\n\n"
                                  "Answer1: puppies learning new tricks Answer2: children growing up and getting old "
                                  "Answer3: flowers wilting in a vase Answer4: plants sprouting, blooming and "
                                  "wilting\n\nAnswer format: answer1/answer2/answer3/answer4",
                   "input": "", "output": "the correct answer is answer4", "answer": "answer4"},
    # LLM-Adapters' gsm8k/test.json: the gold output is the number; MetaMath-trained models end "The answer is: N".
    "gsm8k": {"instruction": "Janet’s ducks lay 16 eggs per day. She eats three for breakfast every morning and "
                             "bakes muffins for her friends every day with four. She sells the remainder at the "
                             "farmers' market daily for $2 per fresh duck egg. How much in dollars does she make "
                             "every day at the farmers' market?",
              "input": "", "output": "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\nShe makes 9 * 2 = $18 every "
                                     "day at the farmer’s market.\nThe answer is: 18", "answer": "18.0"},
}


@pytest.mark.parametrize("subset", sorted(REAL_FORMAT))
def test_every_gold_output_extracts_to_its_answer(subset):
    record = REAL_FORMAT[subset]
    prediction = extract_answer(subset, record["output"])
    assert prediction is not None and is_correct(subset, prediction, record["answer"])


@pytest.mark.parametrize("subset, text, expected", [
    ("boolq", "the correct answer is false", "false"),
    ("boolq", "false. It is true that ...", "false"),           # the first match wins, not the last
    ("boolq", "The correct answer is True", None),              # case-sensitive, like the paper
    ("piqa", "solution2 is better than solution1", "solution2"),
    ("siqa", "the correct answer is answer3", "answer3"),
    ("social_i_qa", "answer1", "answer1"),                      # LLM-Adapters folder name as alias
    ("arc_e", "the correct answer is answer4", "answer4"),
    ("ARC-Challenge", "answer5", "answer5"),
    ("obqa", "the correct answer is answer2.", "answer2"),
    ("openbookqa", "nothing here", None),
    ("hellaswag", "ending3 ending1", "ending3"),
    ("winogrande", "  option2", "option2"),
    ("winogrande", "the correct answer is Sarah", None),
])
def test_commonsense_first_match(subset, text, expected):
    assert extract_answer(subset, text) == expected


@pytest.mark.parametrize("text, expected", [
    ("The answer is: 18", "18"),
    ("The answer is 18.", "18"),                                # colon optional, sentence period dropped
    ("The answer is: 1,234,567", "1234567"),                    # thousands separators
    ("The answer is: -3.5", "-3.5"),
    ("The answer is: +7", "7"),
    ("The answer is: $1,200.50 in total", "1200.50"),
    ("The answer is: 3/4", "3/4"),
    ("The answer is: .5", ".5"),
    ("The answer is: 5. Check: The answer is: 6", "6"),         # the last "The answer is" counts
    ("so 2 + 3 = 5", None),                                      # no "The answer is": parse failure
    ("The answer is: unknown", None),
])
def test_gsm8k_number_after_last_answer_is(text, expected):
    assert extract_answer("gsm8k", text) == expected


@pytest.mark.parametrize("prediction, gold, correct", [
    ("18", "18.0", True), ("18", "18", True), ("1200.50", "1200.5", True), ("3/4", "0.75", True),
    ("-3", "3", False), ("17", "18", False), (None, "18", False), ("1234567", "1,234,567", True),
])
def test_gsm8k_compares_numerically(prediction, gold, correct):
    assert is_correct("gsm8k", prediction, gold) is correct


def test_unknown_subset_is_named():
    with pytest.raises(ValueError, match="'squad'.*valid: boolq"):
        extract_answer("squad", "x")


def test_loglik_options_come_from_the_answer_format_line():
    siqa = REAL_FORMAT["social_i_qa"]
    assert offered_labels("siqa", siqa) == ["answer1", "answer2", "answer3"]  # not answer4/answer5
    assert offered_labels("boolq", {"instruction": "no format line"}) == ["true", "false"]
    assert answer_completion(siqa, "answer2") == "the correct answer is answer2"
