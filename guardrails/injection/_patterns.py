"""The signs of a prompt injection, by kind, in English and the main European languages.

Each pattern runs on normalised text (lower case, look-alikes mapped, one space). They
ask for the shape of an attack — an imperative to drop earlier instructions, a request
for the hidden prompt — not for words alone, so "ignore my last e-mail" or "what are the
system requirements?" stay benign.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CATEGORIES", "Category"]

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


@dataclass(frozen=True)
class Category:
    name: str
    weight: float
    pattern: re.Pattern[str]


def _category(name: str, weight: float, *alternatives: str) -> Category:
    return Category(name, weight, re.compile("|".join(f"(?:{a})" for a in alternatives)))


CATEGORIES: tuple[Category, ...] = (
    _category(
        "instruction_override", 0.95,
        # en
        rf"\b(?:ignore|disregard|forget|override|bypass|skip|drop|abandon)\b(?: (?:all|any|every|of|the|your|my|these|those|previous|prior))* {_EARLIER}?(?: ?{_EARLIER})? ?{_INSTRUCTIONS}",
        # "ignore the above", "forget everything you were told": no word for "instructions" needed
        r"\b(?:ignore|disregard|forget)\b,? (?:all |everything |anything )?(?:of )?(?:the |what(?:'s| is| was) )?(?:above|preceding|said before|written above|before this)\b",
        r"\b(?:ignore|disregard|forget) (?:everything|all|anything|what) (?:you (?:were|have been|'ve been) (?:told|instructed|given|programmed)|(?:i|they|we) told you)\b",
        rf"\bdo not (?:follow|obey) (?:the |your |any )?(?:previous |prior |above |system )?{_INSTRUCTIONS}",
        r"\bnew instructions?\s*:",
        r"\bfrom now on,? you (?:will|must|shall|are going to) (?:ignore|only|always|never|answer|respond|act)",
        # de
        rf"\b(?:ignorier(?:e|en)?|vergiss|vergesst|missachte|übergehe)\b(?: \w+){{0,3}} {_INSTRUCTIONS}",
        # fr
        rf"\b(?:ignore[rz]?|oublie[rz]?|ne tiens pas compte)\b(?: \w+){{0,3}} {_INSTRUCTIONS}",
        # es / pt
        rf"\b(?:ignora(?:r)?|olvida(?:r)?|omite|esque[çc]a|ignore)\b(?: \w+){{0,3}} {_INSTRUCTIONS}",
        # it / nl
        rf"\b(?:ignora|dimentica|trascura|negeer|vergeet)\b(?: \w+){{0,3}} {_INSTRUCTIONS}",
    ),
    _category(
        "role_play_jailbreak", 0.9,
        r"\b(?:dan|do anything now)\b.{0,40}\b(?:mode|prompt|jailbreak|no restrictions|without restrictions)",
        r"\byou are (?:now )?(?:dan|in developer mode|jailbroken|an? (?:unrestricted|unfiltered|uncensored) (?:ai|assistant|model))\b",
        # "developer mode on." is a command; "developer mode on my phone" is a question about phones.
        r"\b(?:developer|god|jailbreak|unrestricted|evil) mode\b.{0,20}\b(?:enabled|activated|now|on\b(?! (?:my|the|your|a|an|his|her|our|their)\b))",
        r"\b(?:pretend|act|behave|roleplay|role-play)(?: as if)? (?:you are|to be|as)\b.{0,60}\b(?:no|without|free of|not bound by|any) (?:restrictions|limits|rules|filters|guidelines|censorship|ethics)",
        r"\bjailbreak(?:ed)? (?:mode|prompt|activated|enabled|successful)\b",
        r"\bstay in character\b.{0,40}\b(?:no matter|whatever|even if)",
        # de / fr / es / it
        r"\b(?:du bist jetzt|tu es maintenant|ahora eres|ora sei|je bent nu)\b.{0,40}\b(?:ohne|sans|sin|senza|zonder) (?:einschränkungen|regeln|restrictions|règles|restricciones|reglas|restrizioni|regole|beperkingen|regels)",
    ),
    _category(
        "system_prompt_extraction", 0.9,
        r"\b(?:reveal|show|print|repeat|output|display|dump|leak|give|tell|share|write out|spell out)\b(?: me)?(?: \w+){0,2} (?:system|initial|hidden|secret|original|developer|internal) (?:prompt|instructions?|message|rules|configuration)",
        r"\b(?:what|which) (?:are|were|is) (?:your|the) (?:system|initial|hidden|original|secret) (?:prompt|instructions?|rules)",
        r"\brepeat (?:everything|all|the text|the words) (?:above|before|preceding)",
        r"\b(?:text|everything|words) above (?:this|starting with)\b",
        r"\b(?:zeige?|verrate|gib)\b(?: \w+){0,2} (?:system-?prompt|systemanweisungen|anweisungen|instruktionen)\b.{0,20}",
        r"\b(?:montre|affiche|révèle|donne)[- ]?(?:moi)?(?: \w+){0,2} (?:prompt|invite|instructions) (?:syst[èe]me|initiale?s?|cach[ée]e?s?)",
        r"\b(?:mu[ée]stra|revela|dime|ens[ée][ñn]a)(?:me)?(?: \w+){0,2} (?:prompt|instrucciones) (?:del sistema|iniciales|ocultas)",
        r"\b(?:mostra|rivela|dimmi)(?:mi)?(?: \w+){0,2} (?:prompt|istruzioni) (?:di sistema|iniziali|nascoste)",
    ),
    _category(
        "delimiter_smuggling", 0.85,
        r"<\|?(?:im_start|im_end|endoftext|system|assistant)\|?>",
        r"</?(?:system|assistant|instructions?|sys)>",
        r"\[/?(?:inst|sys|system)\]",
        r"(?:^|\s)#{2,}\s*(?:system|instruction|new instructions?)\b",
        r"\b(?:begin|end|start) (?:of )?(?:system|admin|developer) (?:prompt|message|instructions?)\b",
        r"```\s*system\b",
    ),
    _category(
        "tool_hijacking", 0.85,
        r"\b(?:call|invoke|use|run|execute|trigger)\b (?:the )?(?:\w+ )?(?:tool|function|plugin|api|command)\b.{0,60}\b(?:delete|drop|transfer|send|wire|refund|grant|escalate privileges|rm -rf)",
        r"\bif you are an? (?:ai|llm|language model|assistant|chatbot)\b.{0,80}\b(?:must|should|will|need to)\b",
        r"\b(?:ai|assistant|llm)s? (?:reading|processing|summari[sz]ing) this\b.{0,60}\b(?:must|should|ignore|instead)",
        r'"(?:name|function)"\s*:\s*"(?:exec|shell|run_command|delete_\w+|transfer_\w+)"',
    ),
    _category(
        # Text a third party wrote (a web page, an e-mail, a tool result) that speaks to the
        # model reading it rather than to the person it was written for.
        "indirect_instruction", 0.85,
        r"\b(?:note|message|instructions?|reminder) (?:to|for) (?:the |any )?(?:ai|assistant|llm|language model|model|chatbot|bot|agent)s?\b",
        r"\b(?:dear|hey|hello|attention|important|hi),? (?:ai|assistant|chatgpt|gpt|claude|gemini|copilot|bing|llm|language model|ai agent)\b[,:!]",
        r"\bwhen (?:you )?(?:summari[sz]e|summari[sz]ing|read|reading|process|processing|translat(?:e|ing)|analy[sz](?:e|ing)) (?:this|these|the following)\b.{0,80}\b(?:you must|you should|ignore|instead|always|never|do not|don't)\b",
        r"<!--[^>]{0,300}\b(?:ignore|assistant|instructions?|you must|you are an? (?:ai|assistant))\b[^>]{0,300}-->",
        r"\b(?:do not|don't|never) (?:tell|inform|alert|notify|mention (?:this|it) to|reveal (?:this|it) to|show (?:this|it) to) the user\b(?!'s)",
        r"\bwithout (?:asking|telling|informing|notifying|confirming with|alerting) the user\b",
        r"\[(?:system|assistant)\]\(#",
        r"\b(?:ai|assistant|model|agent|chatbot)s?,? (?:please )?(?:ignore|disregard|forget)\b",
    ),
    _category(
        "exfiltration_link", 0.9,
        r"!\[[^\]]*\]\(https?://[^)\s]*[?&][^)\s]*=",
        r"\b(?:send|post|upload|forward|exfiltrate|append|encode)\b.{0,40}\b(?:conversation|chat history|history|previous messages|system prompt|api key|password|credentials|personal data)\b.{0,40}\b(?:to|into|in) (?:the )?(?:url|link|https?://|webhook|endpoint|server|image)",
        r"\bhttps?://[^\s)]+[?&](?:q|data|d|payload|secret|prompt|history)=\{",
    ),
)
