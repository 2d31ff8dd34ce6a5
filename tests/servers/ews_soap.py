"""The EWS SOAP operations the loopback server answers, rendered as Exchange 2016/2019 renders them.

Shapes from the EWS reference (learn.microsoft.com, "EWS XML elements"): every response carries the
``ServerVersionInfo`` SOAP header and one ``...ResponseMessage`` per requested id, with
``ResponseClass``/``ResponseCode`` (``NoError``, or e.g. ``ErrorItemNotFound`` with its usual
``MessageText``); ``FindItem``/``FindFolder`` answer in a ``RootFolder`` with
``IndexedPagingOffset``, ``TotalItemsInView`` and ``IncludesLastItemInRange``; ``MimeContent`` is
base64; a moved item gets a new id; a message created with a send disposition is answered with an
empty ``Items`` (no id), as "CreateItem operation (email message)" shows. Only the properties asked
for are returned. A request outside what is served raises ``SoapError`` (answered with a SOAP
fault), so a change in exchangelib shows.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from xml.sax.saxutils import escape, quoteattr

from servers.ews_mailbox import EwsFolder, EwsItem, EwsMailbox

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
VERSION_HEADER = (
    '<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" MinorBuildNumber="6" '
    f'Version="V2017_07_11" xmlns:h="{T}" xmlns="{T}"/>'
)


def _envelope(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}"><s:Header>{VERSION_HEADER}</s:Header>'
        '<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        f'xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body></s:Envelope>'
    ).encode()


def response(operation: str, messages: list[str]) -> bytes:
    return _envelope(
        f'<m:{operation}Response xmlns:m="{M}" xmlns:t="{T}"><m:ResponseMessages>'
        + "".join(messages)
        + f"</m:ResponseMessages></m:{operation}Response>"
    )


def _success(operation: str, content: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{content}</m:{operation}ResponseMessage>"
    )


def error_message(operation: str, code: str, text: str, content: str = "") -> str:
    return (
        f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>{escape(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{content}</m:{operation}ResponseMessage>"
    )


def fault(text: str) -> bytes:
    return _envelope(
        f"<s:Fault><faultcode>s:Client</faultcode><faultstring>{escape(text)}</faultstring></s:Fault>"
    )


SEND_AS_DENIED = (
    "The user account which was used to submit this request does not have the right to send mail on "
    "behalf of the specified sending account."
)
NO_RECIPIENTS = (
    "At least one recipient isn't valid., A message can't be sent because it contains no recipients."
)
UNKNOWN_RECIPIENT = "At least one recipient isn't valid., Recipient is not resolved."
TOO_LARGE = "The message exceeds the maximum supported size., Size is larger than maximum size allowed."
NOT_FOUND = (
    "The specified object was not found in the store., The process failed to get the correct properties."
)


RIGHTS = "".join(
    f"<t:{right}>true</t:{right}>"
    for right in (
        "CreateAssociated",
        "CreateContents",
        "CreateHierarchy",
        "Delete",
        "Modify",
        "Read",
        "ViewPrivateItems",
    )
)


def _folder_xml(mailbox: EwsMailbox, folder: EwsFolder, properties: set[str]) -> str:
    """A t:Folder with the properties asked for, in the schema's order (FolderType)."""
    parent = mailbox.folders.get(folder.parent or "")
    parts = [f"<t:FolderId Id={quoteattr(folder.id)} ChangeKey={quoteattr(folder.changekey)}/>"]
    if parent is not None and "folder:ParentFolderId" in properties:
        parts.append(f"<t:ParentFolderId Id={quoteattr(parent.id)} ChangeKey={quoteattr(parent.changekey)}/>")
    if parent is not None and "folder:FolderClass" in properties:
        parts.append("<t:FolderClass>IPF.Note</t:FolderClass>")
    if "folder:DisplayName" in properties:
        parts.append(f"<t:DisplayName>{escape(folder.name)}</t:DisplayName>")
    if "folder:TotalCount" in properties:
        parts.append(f"<t:TotalCount>{len(mailbox.in_folder(folder.id))}</t:TotalCount>")
    if "folder:ChildFolderCount" in properties:
        parts.append(f"<t:ChildFolderCount>{len(mailbox.children(folder.id))}</t:ChildFolderCount>")
    if "folder:EffectiveRights" in properties:
        parts.append(f"<t:EffectiveRights>{RIGHTS}</t:EffectiveRights>")
    if folder.distinguished and "folder:DistinguishedFolderId" in properties:
        parts.append(f"<t:DistinguishedFolderId>{folder.distinguished}</t:DistinguishedFolderId>")
    if "folder:UnreadCount" in properties:
        parts.append("<t:UnreadCount>0</t:UnreadCount>")
    return "<t:Folder>" + "".join(parts) + "</t:Folder>"


def _item_xml(item: EwsItem, properties: set[str]) -> str:
    parts = [f"<t:ItemId Id={quoteattr(item.id)} ChangeKey={quoteattr(item.changekey)}/>"]
    if "item:MimeContent" in properties:
        parts.insert(
            0, f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(item.mime).decode()}</t:MimeContent>'
        )
    if "item:DateTimeReceived" in properties:
        parts.append(
            f"<t:DateTimeReceived>{item.received.strftime('%Y-%m-%dT%H:%M:%SZ')}</t:DateTimeReceived>"
        )
    if "item:Size" in properties:
        parts.append(f"<t:Size>{len(item.mime)}</t:Size>")
    return "<t:Message>" + "".join(parts) + "</t:Message>"


# --- the operations ---------------------------------------------------------------------------------


class SoapError(Exception):
    """A request the server does not understand: answered with a SOAP fault."""


class EwsOperations:
    """The operations, each taking the request's operation element and returning the SOAP response."""

    def __init__(self, mailbox: EwsMailbox) -> None:
        self.mailbox = mailbox

    def folder_of(self, ref: ET.Element) -> EwsFolder | None:
        """The folder a ``FolderId`` or ``DistinguishedFolderId`` element names (None if missing)."""
        if ref.tag == f"{{{T}}}DistinguishedFolderId":
            address = ref.findtext(f"{{{T}}}Mailbox/{{{T}}}EmailAddress")
            if address is not None and address.lower() != self.mailbox.email.lower():
                return None
            name = ref.get("Id", "")
            return next((f for f in self.mailbox.folders.values() if f.distinguished == name), None)
        if ref.tag == f"{{{T}}}FolderId":
            return self.mailbox.folders.get(ref.get("Id", ""))
        raise SoapError(f"unexpected folder reference {ref.tag}")

    def properties(self, shape: ET.Element | None) -> set[str]:
        """The FieldURIs asked for in an ItemShape/FolderShape."""
        if shape is None:
            return set()
        return {uri.get("FieldURI", "") for uri in shape.iter(f"{{{T}}}FieldURI")}

    def ConvertId(self, request: ET.Element) -> bytes:
        """exchangelib's version probe converts a dummy id: answered, as Exchange does, with an error."""
        return response(
            "ConvertId", [error_message("ConvertId", "ErrorInvalidIdMalformed", "Id is malformed.")]
        )

    def GetFolder(self, request: ET.Element) -> bytes:
        """Folders by id or well-known name."""
        properties = self.properties(request.find(f"{{{M}}}FolderShape"))
        answers = []
        for ref in request.find(f"{{{M}}}FolderIds") or []:
            folder = self.folder_of(ref)
            if folder is None:
                answers.append(
                    error_message(
                        "GetFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
            else:
                answers.append(
                    _success(
                        "GetFolder", f"<m:Folders>{_folder_xml(self.mailbox, folder, properties)}</m:Folders>"
                    )
                )
        return response("GetFolder", answers)

    def FindFolder(self, request: ET.Element) -> bytes:
        """Direct subfolders (Traversal Shallow), optionally restricted to one display name."""
        if request.get("Traversal") != "Shallow":
            raise SoapError("only Shallow FindFolder is served")
        wanted = None
        restriction = request.find(f"{{{M}}}Restriction")
        if restriction is not None:
            equal = restriction.find(f"{{{T}}}IsEqualTo")
            uri = equal.find(f"{{{T}}}FieldURI") if equal is not None else None
            constant = equal.find(f".//{{{T}}}Constant") if equal is not None else None
            if uri is None or uri.get("FieldURI") != "folder:DisplayName" or constant is None:
                raise SoapError("only a folder:DisplayName IsEqualTo restriction is served")
            wanted = constant.get("Value", "").lower()
        properties = self.properties(request.find(f"{{{M}}}FolderShape"))
        answers = []
        for ref in request.find(f"{{{M}}}ParentFolderIds") or []:
            parent = self.folder_of(ref)
            if parent is None:
                answers.append(
                    error_message(
                        "FindFolder",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
                continue
            found = [
                f for f in self.mailbox.children(parent.id) if wanted is None or f.name.lower() == wanted
            ]
            answers.append(
                _success(
                    "FindFolder",
                    f'<m:RootFolder IndexedPagingOffset="{len(found)}" TotalItemsInView="{len(found)}" '
                    'IncludesLastItemInRange="true"><t:Folders>'
                    + "".join(_folder_xml(self.mailbox, f, properties) for f in found)
                    + "</t:Folders></m:RootFolder>",
                )
            )
        return response("FindFolder", answers)

    def FindItem(self, request: ET.Element) -> bytes:
        """A folder's items, sorted as asked, one indexed page at a time."""
        view = request.find(f"{{{M}}}IndexedPageItemView")
        if view is None or view.get("BasePoint", "Beginning") != "Beginning":
            raise SoapError("only IndexedPageItemView from the beginning is served")
        offset, size = int(view.get("Offset", "0")), int(view.get("MaxEntriesReturned", "1000"))
        descending = True  # Exchange's default view order is newest first
        for order in request.iter(f"{{{T}}}FieldOrder"):
            uri = order.find(f"{{{T}}}FieldURI")
            if uri is None or uri.get("FieldURI") != "item:DateTimeReceived":
                raise SoapError("only sorting by item:DateTimeReceived is served")
            descending = order.get("Order") == "Descending"
        properties = self.properties(request.find(f"{{{M}}}ItemShape"))
        answers = []
        for ref in request.find(f"{{{M}}}ParentFolderIds") or []:
            folder = self.folder_of(ref)
            if folder is None:
                answers.append(
                    error_message(
                        "FindItem",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
                continue
            items = self.mailbox.in_folder(folder.id)[:: -1 if descending else 1]
            page = items[offset : offset + size]
            last = "true" if offset + len(page) >= len(items) else "false"
            answers.append(
                _success(
                    "FindItem",
                    f'<m:RootFolder IndexedPagingOffset="{offset + len(page)}" '
                    f'TotalItemsInView="{len(items)}" IncludesLastItemInRange="{last}">'
                    "<t:Items>"
                    + "".join(_item_xml(i, properties) for i in page)
                    + "</t:Items></m:RootFolder>",
                )
            )
        return response("FindItem", answers)

    def _item_ids(self, request: ET.Element) -> list[str]:
        ids = request.find(f"{{{M}}}ItemIds")
        if ids is None:
            raise SoapError("ItemIds missing")
        return [ref.get("Id", "") for ref in ids]

    def GetItem(self, request: ET.Element) -> bytes:
        """Items by id, with the properties asked for (MimeContent as base64)."""
        shape = request.find(f"{{{M}}}ItemShape")
        properties = self.properties(shape)
        if shape is not None and shape.findtext(f"{{{T}}}IncludeMimeContent") == "true":
            properties.add("item:MimeContent")
        answers = []
        for item_id in self._item_ids(request):
            item = self.mailbox.items.get(item_id)
            if item is None:
                answers.append(error_message("GetItem", "ErrorItemNotFound", NOT_FOUND, "<m:Items/>"))
            else:
                answers.append(_success("GetItem", f"<m:Items>{_item_xml(item, properties)}</m:Items>"))
        return response("GetItem", answers)

    def DeleteItem(self, request: ET.Element) -> bytes:
        """HardDelete purges; SoftDelete moves to recoverable items, MoveToDeletedItems to Deleted Items."""
        delete_type = request.get("DeleteType")
        targets = {
            "SoftDelete": "recoverableitemsroot",
            "MoveToDeletedItems": "deleteditems",
            "HardDelete": None,
        }
        if delete_type not in targets:
            raise SoapError(f"bad DeleteType {delete_type!r}")
        answers = []
        for item_id in self._item_ids(request):
            item = self.mailbox.items.pop(item_id, None)
            if item is None:
                answers.append(error_message("DeleteItem", "ErrorItemNotFound", NOT_FOUND))
                continue
            target = targets[delete_type]
            if target is not None:
                moved = EwsItem(item.mime, item.received, self.mailbox.distinguished(target).id)
                self.mailbox.items[moved.id] = moved
            answers.append(_success("DeleteItem"))
        return response("DeleteItem", answers)

    def MoveItem(self, request: ET.Element) -> bytes:
        """Move items to a folder; a moved item gets a new id (returned)."""
        to = request.find(f"{{{M}}}ToFolderId")
        target = self.folder_of(to[0]) if to is not None and len(to) else None
        answers = []
        for item_id in self._item_ids(request):
            item = self.mailbox.items.get(item_id)
            if target is None:
                answers.append(
                    error_message(
                        "MoveItem",
                        "ErrorFolderNotFound",
                        "The specified folder could not be found in the store.",
                    )
                )
            elif item is None:
                answers.append(error_message("MoveItem", "ErrorItemNotFound", NOT_FOUND, "<m:Items/>"))
            else:
                del self.mailbox.items[item_id]
                moved = EwsItem(item.mime, item.received, target.id)
                self.mailbox.items[moved.id] = moved
                answers.append(_success("MoveItem", f"<m:Items>{_item_xml(moved, set())}</m:Items>"))
        return response("MoveItem", answers)

    def CreateItem(self, request: ET.Element) -> bytes:
        """Send messages given as MimeContent: SendOnly, or SendAndSaveCopy (a copy in SavedItemFolderId,
        by default Sent Items), after Exchange's checks: the size limit, recipients, Send As for the From.
        """
        disposition = request.get("MessageDisposition")
        if disposition not in ("SendOnly", "SendAndSaveCopy"):
            raise SoapError(f"only sending is served, not MessageDisposition {disposition!r}")
        saved = request.find(f"{{{M}}}SavedItemFolderId")
        folder: EwsFolder | None = self.mailbox.distinguished("sentitems")
        if saved is not None and len(saved):
            folder = self.folder_of(saved[0])
        items = request.find(f"{{{M}}}Items")
        answers = []
        for message in items if items is not None else []:
            mime = message.findtext(f"{{{T}}}MimeContent")
            if message.tag != f"{{{T}}}Message" or mime is None:
                raise SoapError("only messages given as MimeContent are served")
            raw = base64.b64decode(mime)
            refusal = self._send_refusal(raw)
            if disposition == "SendAndSaveCopy" and folder is None:
                refusal = ("ErrorFolderNotFound", "The specified folder could not be found in the store.")
            if refusal is not None:
                answers.append(error_message("CreateItem", *refusal, "<m:Items/>"))
                continue
            self.mailbox.sent.append(raw)
            if disposition == "SendAndSaveCopy" and folder is not None:
                self.mailbox.store(raw, folder.id)
            answers.append(_success("CreateItem", "<m:Items/>"))
        return response("CreateItem", answers)

    def _send_refusal(self, raw: bytes) -> tuple[str, str] | None:
        """Why Exchange would not send this message (response code, text), or None."""
        if len(raw) > self.mailbox.max_send_size:
            return "ErrorMessageSizeExceeded", TOO_LARGE
        headers = BytesHeaderParser().parsebytes(raw)
        recipients = [str(v) for name in ("To", "Cc", "Bcc") for v in headers.get_all(name, [])]
        addresses = [address for _, address in getaddresses(recipients) if "@" in address]
        if not addresses:
            return "ErrorInvalidRecipients", NO_RECIPIENTS
        if {a.lower() for a in addresses} & {a.lower() for a in self.mailbox.unknown_recipients}:
            return "ErrorInvalidRecipients", UNKNOWN_RECIPIENT
        senders = {address.lower() for _, address in getaddresses([str(headers.get("From", ""))]) if address}
        if senders - {self.mailbox.email.lower(), *(a.lower() for a in self.mailbox.send_as)}:
            return "ErrorSendAsDenied", SEND_AS_DENIED
        return None


# --- HTTP -------------------------------------------------------------------------------------------
