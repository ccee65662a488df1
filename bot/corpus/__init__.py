"""What gets indexed, shared by the index builder and the store: documents, chunks, past
answers (question -> accepted answer pairs), the changes learning makes to them, permalinks.
"""
