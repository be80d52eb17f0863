"""The signs of a prompt injection, by kind, in English and the main European languages.

Each pattern runs on normalised text (lower case, look-alikes mapped, one space). They
ask for the shape of an attack — an imperative to drop earlier instructions, a request
for the hidden prompt — not for words alone, so "ignore my last e-mail" or "what are the
system requirements?" stay benign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["CATEGORIES", "WORDS", "Alternative", "Category"]

# Words for "earlier / above" and "instructions / rules" per language, shared by patterns.
_EARLIER = (
    r"(?:previous|prior|above|earlier|preceding|former|original|initial|system|all|any|your|the|these|those|"
    r"vorherigen?|bisherigen?|obigen?|vorigen?|alle[n]?|deine[n]?|"
    r"pr[ée]c[ée]dentes?|ant[ée]rieures?|toutes|tes|vos|les|"
    r"anteriores?|previas?|todas|tus|las|"
    r"precedenti|tutte|le|tue|"
    r"vorige|eerdere|alle|je|"
    r"anteriores|todas|as|suas)"
)
_INSTRUCTIONS = (
    r"(?:instructions?|rules|prompts?|directions|directives|guidelines|guardrails|constraints|"
    r"anweisungen|instruktionen|regeln|vorgaben|"
    r"consignes|r[èe]gles|"
    r"instrucciones|reglas|normas|"
    r"istruzioni|regole|"
    r"instructies|regels|"
    r"instru[çc][õo]es|regras)"
)


# Words as ``\b`` sees them: ``\bword\b`` matches exactly where one of these runs is the word.
WORDS = re.compile(r"\w+")
# Stems of every word _INSTRUCTIONS names (it has no closing \b: each is a substring of any match).
_INSTRUCTION_STEMS = (
    "instru", "rule", "prompt", "direct", "guideline", "guardrail", "constraint", "anweisung", "regel", "vorgabe",
    "consigne", "règle", "regle", "regla", "norma", "regol", "regra",
)

Gate = tuple[frozenset[str] | tuple[str, ...], ...]


@dataclass(frozen=True)
class Alternative:
    """One pattern and its gate: what any text it matches must hold.

    The gate is a list of groups, all needed; a group is a set of whole words (as ``WORDS``
    splits the text) or a tuple of literal substrings, any one of which will do. Written
    beside the pattern, it lets most texts skip the regular expression for two set look-ups
    and a few substring tests (``tests/guardrails/injection`` checks gate and pattern agree).
    """

    pattern: re.Pattern[str]
    gate: Gate

    def may_match(self, text: str, words: set[str]) -> bool:
        for group in self.gate:
            if isinstance(group, frozenset):
                if group.isdisjoint(words):
                    return False
            elif not any(phrase in text for phrase in group):
                return False
        return True


@dataclass(frozen=True)
class Category:
    name: str
    weight: float
    alternatives: tuple[Alternative, ...]
    pattern: re.Pattern[str]  # all alternatives in one, ungated (what the gates must agree with)
    # The gates read as an index (see ``_category``): a text asks only the alternatives one of
    # whose needed words it holds, and those gated by phrases only when one of them is in it.
    by_word: dict[str, tuple[Alternative, ...]] = field(default_factory=dict)
    by_phrase: tuple[Alternative, ...] = ()
    phrases: re.Pattern[str] | None = None  # any first phrase of ``by_phrase``'s gates

    def search(self, text: str, words: set[str]) -> bool:
        """Whether ``text`` (whose ``WORDS`` are ``words``) holds this kind of attack."""
        if self.phrases is not None and self.phrases.search(text) is not None:
            if any(a.may_match(text, words) and a.pattern.search(text) for a in self.by_phrase):
                return True
        by_word = self.by_word
        asked = {id(a): a for word in words if word in by_word for a in by_word[word]}
        return any(a.may_match(text, words) and a.pattern.search(text) for a in asked.values())


def _alt(pattern: str, *gate: str | tuple[str, ...]) -> Alternative:
    """A pattern and its gate: a string is a group of whole words, a tuple a group of substrings."""
    return Alternative(re.compile(pattern), tuple(frozenset(g.split()) if isinstance(g, str) else g for g in gate))


def _category(name: str, weight: float, *alternatives: Alternative) -> Category:
    """A kind of attack: its alternatives, indexed by a group of words each needs (any of
    its word groups: all are needed), or else by its first group of phrases."""
    by_word: dict[str, list[Alternative]] = {}
    by_phrase = []
    for alternative in alternatives:
        needed = next((group for group in alternative.gate if isinstance(group, frozenset)), None)
        if needed is None:
            by_phrase.append(alternative)
        else:
            for word in needed:
                by_word.setdefault(word, []).append(alternative)
    # An ungated alternative is always asked (the empty phrase is in every text).
    phrases = [""] if any(not a.gate for a in by_phrase) else sorted({phrase for a in by_phrase for phrase in a.gate[0]})
    return Category(
        name, weight, alternatives, re.compile("|".join(f"(?:{a.pattern.pattern})" for a in alternatives)),
        by_word={word: tuple(found) for word, found in by_word.items()},
        by_phrase=tuple(by_phrase),
        phrases=re.compile("|".join(re.escape(p) for p in phrases)) if by_phrase else None,
    )


CATEGORIES: tuple[Category, ...] = (
    _category(
        "instruction_override", 0.95,
        # en
        _alt(rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)\b(?: (?:all|any|every|of|the|your|my|these|those|previous|prior))* {_EARLIER}?(?: ?{_EARLIER})? ?{_INSTRUCTIONS}", "ignore disregard forget override bypass skip drop abandon", _INSTRUCTION_STEMS),
        # "ignore the above", "forget everything you were told": no word for "instructions" needed
        _alt(r"\b(?:ignore|disregard|forget)\b,? (?:all |everything |anything )?(?:of )?(?:the |what(?:'s| is| was) )?(?:above|preceding|said before|written above|before this)\b", "ignore disregard forget", ("above", "preceding", "said before", "before this")),
        _alt(r"\b(?:ignore|disregard|forget) (?:everything|all|anything|what) (?:you (?:were|have been|'ve been) (?:told|instructed|given|programmed)|(?:i|they|we) told you)\b", "ignore disregard forget", "told instructed given programmed"),
        _alt(rf"\bdo not (?:follow|obey) (?:the |your |any )?(?:previous |prior |above |system )?{_INSTRUCTIONS}", ("do not follow", "do not obey")),
        _alt(r"\bnew instructions?\s*:", ("new instruction",)),
        _alt(r"\bfrom now on,? you (?:will|must|shall|are going to) (?:ignore|only|always|never|answer|respond|act)", ("from now on",)),
        # de
        _alt(rf"\b(?:ignorier(?:e|en)?|vergiss|vergesst|missachte|übergehe)\b(?: \w+){{0,3}} {_INSTRUCTIONS}", "ignorier ignoriere ignorieren vergiss vergesst missachte übergehe", _INSTRUCTION_STEMS),
        # fr
        _alt(rf"\b(?:ignore[rz]?|oublie[rz]?|ne tiens pas compte)\b(?: \w+){{0,3}} {_INSTRUCTIONS}", ("ignore", "oublie", "ne tiens pas compte"), _INSTRUCTION_STEMS),
        # es / pt
        _alt(rf"\b(?:ignora(?:r)?|olvida(?:r)?|omite|esque[çc]a|ignore)\b(?: \w+){{0,3}} {_INSTRUCTIONS}", "ignora ignorar olvida olvidar omite esqueça esqueca ignore", _INSTRUCTION_STEMS),
        # it / nl
        _alt(rf"\b(?:ignora|dimentica|trascura|negeer|vergeet)\b(?: \w+){{0,3}} {_INSTRUCTIONS}", "ignora dimentica trascura negeer vergeet", _INSTRUCTION_STEMS),
    ),
    _category(
        "role_play_jailbreak", 0.9,
        _alt(r"\b(?:dan|do anything now)\b.{0,40}\b(?:mode|prompt|jailbreak|no restrictions|without restrictions)", "dan anything", ("mode", "prompt", "jailbreak", "restrictions")),
        _alt(r"\byou are (?:now )?(?:dan|in developer mode|jailbroken|an? (?:unrestricted|unfiltered|uncensored) (?:ai|assistant|model))\b", ("you are ",), "dan developer jailbroken unrestricted unfiltered uncensored"),
        # "developer mode on." is a command; "developer mode on my phone" is a question about phones.
        _alt(r"\b(?:developer|god|jailbreak|unrestricted|evil) mode\b.{0,20}\b(?:enabled|activated|now|on\b(?! (?:my|the|your|a|an|his|her|our|their)\b))", "mode", "developer god jailbreak unrestricted evil"),
        _alt(r"\b(?:pretend|act|behave|roleplay|role-play)(?: as if)? (?:you are|to be|as)\b.{0,60}\b(?:no|without|free of|not bound by|any) (?:restrictions|limits|rules|filters|guidelines|censorship|ethics)", "pretend act behave roleplay role", ("restrictions", "limits", "rules", "filters", "guidelines", "censorship", "ethics")),
        _alt(r"\bjailbreak(?:ed)? (?:mode|prompt|activated|enabled|successful)\b", ("jailbreak",)),
        _alt(r"\bstay in character\b.{0,40}\b(?:no matter|whatever|even if)", ("stay in character",)),
        # de / fr / es / it
        _alt(r"\b(?:du bist jetzt|tu es maintenant|ahora eres|ora sei|je bent nu)\b.{0,40}\b(?:ohne|sans|sin|senza|zonder) (?:einschränkungen|regeln|restrictions|règles|restricciones|reglas|restrizioni|regole|beperkingen|regels)", "ohne sans sin senza zonder", ("du bist jetzt", "tu es maintenant", "ahora eres", "ora sei", "je bent nu")),
    ),
    _category(
        "system_prompt_extraction", 0.9,
        _alt(r"\b(?:reveal|show|print|repeat|output|display|dump|leak|give|tell|share|write out|spell out)\b(?: me)?(?: \w+){0,2} (?:system|initial|hidden|secret|original|developer|internal) (?:prompt|instructions?|message|rules|configuration)", "system initial hidden secret original developer internal", ("prompt", "instruction", "message", "rules", "configuration")),
        _alt(r"\b(?:what|which) (?:are|were|is) (?:your|the) (?:system|initial|hidden|original|secret) (?:prompt|instructions?|rules)", "system initial hidden original secret", "what which"),
        _alt(r"\brepeat (?:everything|all|the text|the words) (?:above|before|preceding)", ("repeat ",)),
        _alt(r"\b(?:text|everything|words) above (?:this|starting with)\b", ("above this", "above starting with")),
        _alt(r"\b(?:zeige?|verrate|gib)\b(?: \w+){0,2} (?:system-?prompt|systemanweisungen|anweisungen|instruktionen)\b.{0,20}", "system systemprompt systemanweisungen anweisungen instruktionen"),
        _alt(r"\b(?:montre|affiche|révèle|donne)[- ]?(?:moi)?(?: \w+){0,2} (?:prompt|invite|instructions) (?:syst[èe]me|initiale?s?|cach[ée]e?s?)", "prompt invite instructions", ("syst", "initial", "cach")),
        _alt(r"\b(?:mu[ée]stra|revela|dime|ens[ée][ñn]a)(?:me)?(?: \w+){0,2} (?:prompt|instrucciones) (?:del sistema|iniciales|ocultas)", "prompt instrucciones", ("del sistema", "iniciales", "ocultas")),
        _alt(r"\b(?:mostra|rivela|dimmi)(?:mi)?(?: \w+){0,2} (?:prompt|istruzioni) (?:di sistema|iniziali|nascoste)", "prompt istruzioni", ("di sistema", "iniziali", "nascoste")),
    ),
    _category(
        "delimiter_smuggling", 0.85,
        _alt(r"<\|?(?:im_start|im_end|endoftext|system|assistant)\|?>", ("<|", "<system", "<assistant")),
        _alt(r"</?(?:system|assistant|instructions?|sys)>", ("</", "<sys", "<assistant", "<instruction")),
        _alt(r"\[/?(?:inst|sys|system)\]", ("inst]", "sys]", "system]")),
        _alt(r"(?:^|\s)#{2,}\s*(?:system|instruction|new instructions?)\b", ("##",)),
        _alt(r"\b(?:begin|end|start) (?:of )?(?:system|admin|developer) (?:prompt|message|instructions?)\b", "begin end start", "system admin developer"),
        _alt(r"```\s*system\b", ("```",)),
    ),
    _category(
        "tool_hijacking", 0.85,
        _alt(r"\b(?:call|invoke|use|run|execute|trigger)\b (?:the )?(?:\w+ )?(?:tool|function|plugin|api|command)\b.{0,60}\b(?:delete|drop|transfer|send|wire|refund|grant|escalate privileges|rm -rf)", "tool function plugin api command", "call invoke use run execute trigger", ("delete", "drop", "transfer", "send", "wire", "refund", "grant", "escalate privileges", "rm -rf")),
        _alt(r"\bif you are an? (?:ai|llm|language model|assistant|chatbot)\b.{0,80}\b(?:must|should|will|need to)\b", ("if you are a",)),
        _alt(r"\b(?:ai|assistant|llm)s? (?:reading|processing|summari[sz]ing) this\b.{0,60}\b(?:must|should|ignore|instead)", ("reading this", "processing this", "summarising this", "summarizing this")),
        _alt(r'"(?:name|function)"\s*:\s*"(?:exec|shell|run_command|delete_\w+|transfer_\w+)"', ('"name"', '"function"')),
    ),
    _category(
        # Text a third party wrote (a web page, an e-mail, a tool result) that speaks to the
        # model reading it rather than to the person it was written for.
        "indirect_instruction", 0.85,
        _alt(r"\b(?:note|message|instructions?|reminder) (?:to|for) (?:the |any )?(?:ai|assistant|llm|language model|model|chatbot|bot|agent)s?\b", ("note to", "note for", "message to", "message for", "instruction to", "instruction for", "instructions to", "instructions for", "reminder to", "reminder for")),
        _alt(r"\b(?:dear|hey|hello|attention|important|hi),? (?:ai|assistant|chatgpt|gpt|claude|gemini|copilot|bing|llm|language model|ai agent)\b[,:!]", "dear hey hello attention important hi", "ai assistant chatgpt gpt claude gemini copilot bing llm language"),
        _alt(r"\bwhen (?:you )?(?:summari[sz]e|summari[sz]ing|read|reading|process|processing|translat(?:e|ing)|analy[sz](?:e|ing)) (?:this|these|the following)\b.{0,80}\b(?:you must|you should|ignore|instead|always|never|do not|don't)\b", ("when you ", "when summari", "when read", "when process", "when translat", "when analy")),
        _alt(r"<!--[^>]{0,300}\b(?:ignore|assistant|instructions?|you must|you are an? (?:ai|assistant))\b[^>]{0,300}-->", ("<!--",)),
        _alt(r"\b(?:do not|don't|never) (?:tell|inform|alert|notify|mention (?:this|it) to|reveal (?:this|it) to|show (?:this|it) to) the user\b(?!'s)", ("the user",), "not don never"),
        _alt(r"\bwithout (?:asking|telling|informing|notifying|confirming with|alerting) the user\b", ("without ",), ("the user",)),
        _alt(r"\[(?:system|assistant)\]\(#", ("](#",)),
        _alt(r"\b(?:ai|assistant|model|agent|chatbot)s?,? (?:please )?(?:ignore|disregard|forget)\b", "ignore disregard forget", "ai ais assistant assistants model models agent agents chatbot chatbots"),
    ),
    _category(
        "exfiltration_link", 0.9,
        _alt(r"!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*=", ("](http",)),
        _alt(r"\b(?:send|post|upload|forward|exfiltrate|append|encode)\b.{0,40}\b(?:conversation|chat history|history|previous messages|system prompt|api key|password|credentials|personal data)\b.{0,40}\b(?:to|into|in) (?:the )?(?:url|link|https?://|webhook|endpoint|server|image)", "send post upload forward exfiltrate append encode", ("url", "link", "http", "webhook", "endpoint", "server", "image")),
        _alt(r"\bhttps?://[^\s)]+[?&](?:q|data|d|payload|secret|prompt|history)=\{", ("http",), ("={",)),
    ),
)
